"""KITTI optical-flow PNGs: 16-bit RGB, written by `enrich.ops.png16` and read through libpng (PIL
reads 16-bit RGB as 8-bit). The format is
KITTI's: channel 0 holds u (x displacement), channel 1 holds v (y displacement), channel 2 the
valid flag, and

    flow = (png - 2**15) / 64    where channel 2 (valid) is 1

so the range is ±512 px (exactly -512 .. 511.984) and the precision 1/64 px; values are rounded to
the nearest step, an error of at most 1/128 px.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from enrich.ops.png16 import SIGNATURE, encode_png16

_OFFSET = 2**15
_SCALE = 64.0
_CHANNELS = 3
_GENERAL_READER = "use cv2.imread(path, cv2.IMREAD_UNCHANGED) (BGR order) for general PNGs"


def encode_flow_png(flow: np.ndarray, compress=None) -> bytes:
    """Float [H, W, 2] flow (u, v in px) -> KITTI flow PNG bytes.

    A vector that is not finite, or whose stored value would fall outside 0..65535 (beyond ±512
    px), is marked invalid and stored as u = v = 2**15 (zero flow): clipping it, as KITTI's devkit
    does, would keep a wrong vector marked valid. The "Up" filter of every scanline compresses
    smooth flow 2-15x better than no filter and, with less left to deflate, is no slower.
    """
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or 0 in flow.shape:
        raise ValueError(f"flow must be a non-empty [H, W, 2] array, got shape {flow.shape}")
    height, width = flow.shape[:2]
    stored, valid = _stored(flow)
    stored[~valid] = _OFFSET
    samples = np.empty((height, width, _CHANNELS), np.uint16)
    samples[..., :2] = stored
    samples[..., 2] = valid
    return encode_png16(samples, compress)


def _stored(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stored values of a flow field (float64, a new array), and where they are valid
    (representable and finite). In place, as this runs on every flow field enrich writes."""
    stored = np.array(flow, dtype=np.float64)
    stored *= _SCALE
    stored += _OFFSET
    np.rint(stored, out=stored)
    with np.errstate(invalid="ignore"):
        fits = (stored >= 0) & (stored <= 65535)  # False for NaN and inf
    return stored, fits[..., 0] & fits[..., 1]


def storable(flow: np.ndarray) -> np.ndarray:
    """bool [H, W]: the vectors `encode_flow_png` stores as valid."""
    return _stored(flow)[1]


def decode_flow_png(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """KITTI flow PNG bytes -> (flow float32 [H, W, 2] with NaN where invalid, valid bool [H, W]).

    Reads any 16-bit RGB PNG: every filter type, interlaced or not, so files written by libpng
    (KITTI's own devkit) load as well as enrich's. The chunks and the header are checked here, for
    a clear message; libpng (through torchvision, which enrich installs anyway) decodes the pixels.
    """
    width, height = _check(data)
    samples = _libpng(data)
    if samples.shape != (height, width, _CHANNELS):
        raise ValueError(f"PNG decoded to {samples.shape}, expected {(height, width, _CHANNELS)}")
    valid = samples[..., 2] > 0  # KITTI's devkit treats any non-zero flag as valid
    flow = (samples[..., :2].astype(np.float32) - _OFFSET) / _SCALE
    flow[~valid] = np.nan
    return flow, valid


def _libpng(data: bytes) -> np.ndarray:
    import torch
    from torchvision.io import ImageReadMode, decode_png

    try:
        image = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.UNCHANGED)
    except RuntimeError as error:
        raise ValueError(f"corrupt PNG image data: {str(error).strip().splitlines()[0]}") from None
    return image.permute(1, 2, 0).numpy()


def _check(data: bytes) -> tuple[int, int]:
    """Check signature, CRCs and header; return width and height."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    position, header, idat = len(SIGNATURE), None, False
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        if position + 12 + length > len(data):
            raise ValueError(f"PNG chunk {kind!r} is truncated")
        payload = data[position + 8 : position + 8 + length]
        if struct.unpack_from(">I", data, position + 8 + length)[0] != zlib.crc32(kind + payload):
            raise ValueError(f"PNG chunk {kind!r} fails its CRC")
        position += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", payload)
        elif kind == b"IDAT":
            idat = True
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise ValueError("PNG has no IHDR or no IDAT chunk")
    width, height, depth, colour = header[:4]
    if (depth, colour) != (16, 2):
        raise ValueError(
            f"not a KITTI flow PNG: bit depth {depth}, colour type {colour} (expected 16-bit RGB); {_GENERAL_READER}"
        )
    return width, height
