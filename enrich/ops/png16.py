"""16-bit PNG writing with numpy and zlib: the depth maps (grey) and the flow fields (RGB).

Every scanline uses filter type 2 ("Up"), computed in one numpy pass. PIL tries all five filters
on every row and cannot write 16-bit RGB at all; this writer is about twice as fast as PIL at the
same zlib level, with files as small or smaller (measured on 720p depth maps, smooth and noisy).
Any PNG reader decodes the result.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
FILTER_NONE, FILTER_SUB, FILTER_UP = 0, 1, 2
_COLOUR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type (grey, RGB)


def encode_png16(samples: np.ndarray, compress_level: int = 1) -> bytes:
    """uint16 [H, W] (grey) or [H, W, 3] (RGB) -> PNG bytes. Level 1 is several times faster than
    zlib's default 6 for a few % more bytes."""
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
            _chunk(b"IDAT", zlib.compress(scanlines.tobytes(), compress_level)),
            _chunk(b"IEND", b""),
        ]
    )


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
