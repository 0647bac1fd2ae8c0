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


def readers():
    """Independent decoders of 16-bit PNGs: PIL (grey only), libpng through torchvision, OpenCV."""
    import torch
    from torchvision.io import ImageReadMode, decode_png

    def libpng(data):
        image = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.UNCHANGED)
        return image.permute(1, 2, 0).numpy().squeeze(-1) if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()

    def pil(data):
        with Image.open(BytesIO(data)) as image:
            return np.asarray(image).astype(np.uint16) if image.mode.startswith("I;16") else None

    found = {"libpng": libpng, "pil": pil}
    try:
        import cv2

        def opencv(data):
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
            return image[..., ::-1] if image.ndim == 3 else image  # BGR

        found["opencv"] = opencv
    except ImportError:
        pass
    return found


def maps():
    from enrich.ops.flowpng import _stored
    from enrich.ops.quantize import quantize
    from tests.scenes import disparity, scene

    rng = np.random.default_rng(3)
    depth, flow = scene(90, 160, seed=2)
    codes = quantize(disparity(depth))[0]
    stored, valid = _stored(flow)
    rgb = np.dstack([stored.astype(np.uint16), valid.astype(np.uint16)])
    assert codes.std() > 1000 and np.ptp(rgb[..., 0]) > 100  # a scene, not a flat map
    return {
        "random grey": rng.integers(0, 65536, (47, 61), dtype=np.uint16),
        "random rgb": rng.integers(0, 65536, (47, 61, 3), dtype=np.uint16),
        "scene depth": codes,
        "scene flow": rgb,
    }


@pytest.mark.parametrize("deflate", ["isal", "zlib"])
@pytest.mark.parametrize("kind", ["random grey", "random rgb", "scene depth", "scene flow"])
def test_every_reader_decodes_every_map_exactly(kind, deflate):
    from enrich.ops import png16

    if deflate == "isal" and png16.isal_zlib is None:
        pytest.skip("isal is not installed")
    samples = maps()[kind]
    data = encode_png16(samples, png16.isal_deflate if deflate == "isal" else png16.zlib_deflate)
    decoded = {name: read(data) for name, read in readers().items()}
    assert len([d for d in decoded.values() if d is not None]) >= 2
    for name, image in decoded.items():
        if image is not None:
            assert image.dtype == np.uint16 and np.array_equal(image, samples), name


def test_isal_is_the_default_when_installed():
    from enrich.ops import png16

    pytest.importorskip("isal")
    assert png16.deflate is png16.isal_deflate and png16.DEFLATE == "isal"
