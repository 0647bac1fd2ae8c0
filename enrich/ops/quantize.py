"""Lossless storage of float maps as 16-bit PNG, with the decode formula kept in the row.

    value = png_uint16 * scale + offset        for png_uint16 >= 1
    png_uint16 == 0                            means "no value" (the model gave NaN or inf there)

Valid values use the codes 1..65535 spread linearly over [min, max] of the frame, so the decoded
map is within scale / 2 of the model's output everywhere.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from enrich.ops import png16

LEVELS = 65534  # codes 1..65535 carry values; 0 marks invalid pixels


def quantize(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Float map -> (uint16 codes, scale, offset)."""
    values = np.asarray(values, dtype=np.float64)
    valid = np.isfinite(values)
    codes = np.zeros(values.shape, dtype=np.uint16)
    if not valid.any():
        return codes, 0.0, 0.0
    lo = float(values[valid].min())
    hi = float(values[valid].max())
    scale = (hi - lo) / LEVELS if hi > lo else 0.0
    if scale > 0:
        scaled = np.rint((np.where(valid, values, lo) - lo) / scale) + 1
        codes[...] = np.clip(scaled, 1, LEVELS + 1).astype(np.uint16)
    else:
        codes[...] = 1
    codes[~valid] = 0
    return codes, scale, lo - scale


def dequantize(codes: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """uint16 codes -> float32 map, NaN where the code is 0."""
    values = codes.astype(np.float64) * scale + offset
    values[codes == 0] = np.nan
    return values.astype(np.float32)


def encode_png16(codes: np.ndarray, compress=None) -> bytes:
    """Single-channel 16-bit PNG of the codes (`compress`: see `png16.encode_png16`)."""
    if codes.dtype != np.uint16 or codes.ndim != 2:
        raise ValueError(f"expected a 2-D uint16 array, got {codes.dtype} with shape {codes.shape}")
    return png16.encode_png16(codes, compress)


def decode_png16(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        if image.mode not in ("I;16", "I;16B", "I"):
            raise ValueError(f"expected a 16-bit single-channel PNG, got mode {image.mode}")
        return np.asarray(image).astype(np.uint16)
