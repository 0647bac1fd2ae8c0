"""16-bit PNG writing with numpy: the depth maps (grey) and the flow fields (RGB).

Every scanline uses filter type 2 ("Up"), computed in one numpy pass. PIL tries all five filters
on every row and cannot write 16-bit RGB at all. The deflate stream comes from Intel's ISA-L
(python-isal's `isal_zlib`, several times faster than zlib for files as small or smaller), or from
zlib where isal is not installed. Either way it is a standard zlib stream, so any PNG reader
(libpng, PIL, OpenCV) decodes the result exactly. `benchmarks/png_encode.py` measured the levels.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import numpy as np

try:
    from isal import isal_zlib
except ImportError:  # optional: zlib writes the same format, slower
    isal_zlib = None

ISAL_LEVEL = 2  # isal's 0..3: as small as zlib 1 (depth), 5% smaller (flow), 3x and 2x faster; benchmarks/png_encode.py
ZLIB_LEVEL = 1  # zlib's 1..9: level 1 is several times faster than the default 6 for a few % more bytes


def isal_deflate(data: bytes) -> bytes:
    return isal_zlib.compress(data, ISAL_LEVEL)


def zlib_deflate(data: bytes) -> bytes:
    return zlib.compress(data, ZLIB_LEVEL)


deflate: Callable[[bytes], bytes] = isal_deflate if isal_zlib is not None else zlib_deflate
DEFLATE = "isal" if isal_zlib is not None else "zlib"

SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILTER_UP = 2
_COLOUR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type (grey, RGB)


def encode_png16(samples: np.ndarray, compress: Callable[[bytes], bytes] | None = None) -> bytes:
    """uint16 [H, W] (grey) or [H, W, 3] (RGB) -> PNG bytes, deflated by `compress` (by default
    `deflate`: isal when installed, else zlib)."""
    samples = np.asarray(samples)
    channels = 1 if samples.ndim == 2 else samples.shape[-1] if samples.ndim == 3 else 0
    if samples.dtype != np.uint16 or channels not in _COLOUR_TYPES or 0 in samples.shape:
        raise ValueError(f"expected a non-empty uint16 [H, W] or [H, W, 3] array, got {samples.dtype} {samples.shape}")
    height, width = samples.shape[:2]
    rows = samples.astype(">u2").view(np.uint8).reshape(height, width * 2 * channels)
    filtered = rows.copy()
    filtered[1:] -= rows[:-1]  # "Up": uint8 arithmetic wraps modulo 256, as the PNG spec defines
    scanlines = np.concatenate([np.full((height, 1), FILTER_UP, np.uint8), filtered], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 16, _COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join(
        [
            SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", (compress or deflate)(scanlines.tobytes())),
            _chunk(b"IEND", b""),
        ]
    )


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
