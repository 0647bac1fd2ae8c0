from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from enrich.ops.png16 import encode_png16


def test_grey_decodes_exactly_with_an_independent_reader():
    """PIL, not our own code, reads it back: every code survives, across byte wraps of the Up filter."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 65536, size=(41, 67), dtype=np.uint16)
    codes[0, :3] = (0, 65535, 255)
    codes[1, :3] = (65535, 0, 256)
    with Image.open(BytesIO(encode_png16(codes))) as image:
        assert image.size == (67, 41) and image.mode.startswith("I;16")
        assert np.array_equal(np.asarray(image).astype(np.uint16), codes)


def test_rgb_header_and_size():
    samples = np.zeros((5, 7, 3), np.uint16)
    with Image.open(BytesIO(encode_png16(samples))) as image:
        assert image.size == (7, 5) and image.mode == "RGB"  # PIL reads 16-bit RGB as 8-bit


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 2), np.uint8), np.zeros((2, 2, 2), np.uint16), np.zeros((0, 3), np.uint16)]
)
def test_rejects_what_it_cannot_write(bad):
    with pytest.raises(ValueError, match="expected a non-empty uint16"):
        encode_png16(bad)
