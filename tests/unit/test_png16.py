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


# Independent decoders of 16-bit PNGs, run in a fresh interpreter: decord (which the test session
# imports) puts its own zlib 1.2.3 into the process's global symbols, and libpng (in OpenCV and in
# torchvision) then fails or crashes there. Prints one line per file: reader=ok|differs|cannot.
READERS = """
import sys, numpy as np
from pathlib import Path
import cv2, torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_png

def libpng(data):
    image = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), ImageReadMode.UNCHANGED)
    return image.permute(1, 2, 0).numpy().squeeze(-1) if image.shape[0] == 1 else image.permute(1, 2, 0).numpy()

def pil(data):
    import io
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image).astype(np.uint16) if image.mode.startswith("I;16") else None

def opencv(data):
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return image[..., ::-1] if image is not None and image.ndim == 3 else image  # BGR

for png in sorted(Path(sys.argv[1]).glob("*.png")):
    expected = np.load(png.with_suffix(".npy"))
    verdicts = []
    for name, read in (("pil", pil), ("libpng", libpng), ("opencv", opencv)):
        image = read(png.read_bytes())
        ok = image is not None and image.dtype == np.uint16 and np.array_equal(image, expected)
        verdicts.append(f"{name}={'cannot' if image is None else 'ok' if ok else 'differs'}")
    print(png.stem, *verdicts)
"""


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


def test_every_reader_decodes_every_map_exactly(tmp_path):
    """PIL (grey only: it reads 16-bit RGB as 8-bit), libpng through torchvision, and OpenCV decode
    what enrich writes, with isal and with zlib, random codes and a scene's depth and flow, exactly."""
    import subprocess
    import sys

    from enrich.ops import png16

    pytest.importorskip("cv2")
    deflaters = {"zlib": png16.zlib_deflate}
    if png16.isal_zlib is not None:
        deflaters["isal"] = png16.isal_deflate
    for kind, samples in maps().items():
        for name, deflate in deflaters.items():
            stem = f"{kind.replace(' ', '_')}-{name}"
            (tmp_path / f"{stem}.png").write_bytes(encode_png16(samples, deflate))
            np.save(tmp_path / f"{stem}.npy", samples)
    out = subprocess.run([sys.executable, "-c", READERS, str(tmp_path)], capture_output=True, text=True, check=True)
    lines = out.stdout.split("\n")[:-1]
    assert len(lines) == len(maps()) * len(deflaters), out.stdout + out.stderr
    for line in lines:
        stem, *verdicts = line.split()
        grey = stem.startswith(("random_grey", "scene_depth"))
        expected = ["pil=ok" if grey else "pil=cannot", "libpng=ok", "opencv=ok"]
        assert verdicts == expected, line


def test_isal_is_the_default_when_installed():
    from enrich.ops import png16

    pytest.importorskip("isal")
    assert png16.deflate is png16.isal_deflate and png16.DEFLATE == "isal"
