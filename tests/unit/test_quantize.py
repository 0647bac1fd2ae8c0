import numpy as np
import pytest

from enrich.ops.quantize import decode_png16, dequantize, encode_png16, quantize


def roundtrip(values):
    codes, scale, offset = quantize(values)
    return dequantize(decode_png16(encode_png16(codes)), scale, offset), scale, codes


def test_roundtrip_within_half_a_step():
    rng = np.random.default_rng(0)
    values = (rng.random((37, 53)) * 7 - 2).astype(np.float32)
    decoded, scale, codes = roundtrip(values)
    assert codes.min() == 1 and codes.max() == 65535
    assert np.abs(decoded - values).max() <= scale / 2 + 1e-6 * np.abs(values).max()


def test_invalid_pixels_are_zero_and_decode_to_nan():
    values = np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5)
    values[0, 0], values[1, 1] = np.nan, np.inf
    decoded, _, codes = roundtrip(values)
    assert codes[0, 0] == 0 and codes[1, 1] == 0
    assert np.isnan(decoded[0, 0]) and np.isnan(decoded[1, 1])
    assert np.isfinite(decoded).sum() == 18


def test_constant_map():
    decoded, scale, codes = roundtrip(np.full((3, 4), 2.5, np.float32))
    assert scale == 0 and (codes == 1).all()
    np.testing.assert_allclose(decoded, 2.5)


def test_all_invalid():
    decoded, _, codes = roundtrip(np.full((2, 2), np.nan, np.float32))
    assert (codes == 0).all() and np.isnan(decoded).all()


def test_png_is_16_bit_single_channel():
    from io import BytesIO

    from PIL import Image

    codes, _, _ = quantize(np.arange(12, dtype=np.float32).reshape(3, 4))
    image = Image.open(BytesIO(encode_png16(codes)))
    assert image.size == (4, 3) and image.mode.startswith("I;16")


def test_encode_rejects_wrong_dtype():
    with pytest.raises(ValueError, match="expected a 2-D uint16"):
        encode_png16(np.zeros((2, 2), np.float32))
