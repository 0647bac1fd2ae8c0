"""KITTI optical-flow PNGs: 16-bit RGB, written (`enrich.ops.png16`) and read with numpy and zlib
only: PIL reads 16-bit RGB as 8-bit, and torchvision's libpng crashes in a process that has loaded
decord (their zlibs clash). The format is
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
_BYTES_PER_PIXEL = 2 * _CHANNELS
FILTER_NONE, FILTER_SUB, FILTER_UP, FILTER_AVERAGE, FILTER_PAETH = range(5)
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

    Reads any non-interlaced 16-bit RGB PNG: every filter type, so files written by libpng (KITTI's
    own devkit, OpenCV), which pick a filter per row, load as well as enrich's. Rows filtered with
    Average or Paeth are undone byte by byte in Python (about 1 s for a KITTI frame); enrich's own
    files use Up, undone in one numpy operation per row.
    """
    width, height, idat = _read_chunks(data)
    try:
        scanlines = zlib.decompress(idat)
    except zlib.error as error:
        raise ValueError(f"corrupt PNG image data: {error}") from None
    stride = 1 + width * _BYTES_PER_PIXEL
    if len(scanlines) != height * stride:
        raise ValueError(f"PNG image data has {len(scanlines)} bytes, expected {height * stride}")
    rows = _unfilter(np.frombuffer(scanlines, np.uint8).reshape(height, stride))
    samples = rows.view(">u2").reshape(height, width, _CHANNELS)
    valid = samples[..., 2] > 0  # KITTI's devkit treats any non-zero flag as valid
    flow = (samples[..., :2].astype(np.float32) - _OFFSET) / _SCALE
    flow[~valid] = np.nan
    return flow, valid


def _read_chunks(data: bytes) -> tuple[int, int, bytes]:
    """Check signature, CRCs and header; return width, height and the joined IDAT payloads."""
    if not data.startswith(SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    position, header, idat = len(SIGNATURE), None, []
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
            idat.append(payload)
        elif kind == b"IEND":
            break
    if header is None or not idat:
        raise ValueError("PNG has no IHDR or no IDAT chunk")
    width, height, depth, colour, _, _, interlace = header
    if (depth, colour) != (16, 2):
        raise ValueError(
            f"not a KITTI flow PNG: bit depth {depth}, colour type {colour} (expected 16-bit RGB); {_GENERAL_READER}"
        )
    if interlace:
        raise ValueError(f"interlaced PNGs are not supported; {_GENERAL_READER}")
    return width, height, b"".join(idat)


def _unfilter(scanlines: np.ndarray) -> np.ndarray:
    """Undo each scanline's filter (PNG specification, section 9): a loop over rows, the rows of
    filters 0, 1 and 2 vectorised."""
    rows = np.empty((scanlines.shape[0], scanlines.shape[1] - 1), np.uint8)
    previous = np.zeros(rows.shape[1], np.uint8)
    for index, (kind, line) in enumerate(zip(scanlines[:, 0], scanlines[:, 1:], strict=True)):
        if kind == FILTER_NONE:
            rows[index] = line
        elif kind == FILTER_SUB:  # running sum of each byte position across pixels, modulo 256
            rows[index] = np.cumsum(line.reshape(-1, _BYTES_PER_PIXEL), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == FILTER_UP:
            rows[index] = line + previous
        elif kind in (FILTER_AVERAGE, FILTER_PAETH):
            rows[index] = np.frombuffer(_unfilter_left(kind, line.tobytes(), previous.tobytes()), np.uint8)
        else:
            raise ValueError(f"PNG filter type {kind} on row {index} is not one of 0-4: a corrupt file")
        previous = rows[index]
    return rows


def _unfilter_left(kind: int, line: bytes, up: bytes) -> bytearray:
    """Average or Paeth: each byte depends on the one a pixel to its left, already undone."""
    out, step = bytearray(line), _BYTES_PER_PIXEL
    for i in range(len(out)):
        a = out[i - step] if i >= step else 0
        b = up[i]
        if kind == FILTER_AVERAGE:
            out[i] = (out[i] + ((a + b) >> 1)) & 0xFF
            continue
        c = up[i - step] if i >= step else 0
        pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)  # |p - a|, |p - b|, |p - c| for p = a + b - c
        out[i] = (out[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return out
