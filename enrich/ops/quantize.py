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


def quantize_batch(maps) -> tuple[list[np.ndarray], list[float], list[float]]:
    """`quantize` for a torch batch [N, H, W] on its own device (the model's GPU): the same codes,
    bit for bit (float64, true division, round half to even), and only they (2 bytes a pixel, not
    4) are copied back to the host. One map at a time, to bound the float64 temporaries. Imports
    torch: for the model actors."""
    import torch

    codes, scales, offsets = [], [], []
    levels = None
    for values in maps:
        values = values.double()
        valid = torch.isfinite(values)
        if not bool(valid.any()):
            codes.append(np.zeros(tuple(values.shape), np.uint16))
            scales.append(0.0)
            offsets.append(0.0)
            continue
        lo, hi = values[valid].min(), values[valid].max()
        if levels is None:  # a tensor: CUDA turns division by a Python number into a multiply
            levels = torch.tensor(float(LEVELS), dtype=torch.float64, device=values.device)
        scale = (hi - lo) / levels if bool(hi > lo) else torch.zeros_like(lo)
        if bool(scale > 0):
            scaled = torch.round((torch.where(valid, values, lo) - lo) / scale) + 1
            quantized = torch.clamp(scaled, 1, LEVELS + 1)
        else:
            quantized = torch.ones_like(values)
        quantized = torch.where(valid, quantized, torch.zeros_like(quantized))
        codes.append(quantized.to(torch.int32).to(torch.uint16).cpu().numpy())
        scales.append(float(scale))
        offsets.append(float(lo - scale))
    return codes, scales, offsets


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
