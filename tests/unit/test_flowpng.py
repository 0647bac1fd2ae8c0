"""KITTI flow PNG codec: round trip, invalid marking, and checks against readers that are not ours."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from enrich.ops.flowpng import decode_flow_png, encode_flow_png


def smooth_flow(height, width, amplitude=500.0, seed=0):
    """Sums of random low-frequency waves, scaled to just under ±amplitude px."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = []
    for _ in range(2):
        waves = sum(np.sin(rng.normal(0, 0.05) * x + rng.normal(0, 0.05) * y + rng.uniform(0, 6.3)) for _ in range(6))
        channels.append(waves / np.abs(waves).max() * amplitude * 0.999)
    return np.stack(channels, axis=-1).astype(np.float32)


def stored(flow):
    """What KITTI stores for valid vectors: round(value * 64 + 2**15)."""
    return np.rint(flow.astype(np.float64) * 64 + 2**15).astype(np.uint16)


def chunks(data):
    """(kind, payload) of every chunk, walking the file by hand."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, found = 8, []
    while position < len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind, payload = data[position + 4 : position + 8], data[position + 8 : position + 8 + length]
        assert struct.unpack_from(">I", data, position + 8 + length)[0] == zlib.crc32(kind + payload)
        found.append((kind, payload))
        position += 12 + length
    return found


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def handmade_png(samples, filters):
    """A 16-bit RGB PNG written independently of the encoder, byte by byte, with the given filter
    type per row: 0 None, 1 Sub, 2 Up, 3 Average, 4 Paeth (the PNG specification, section 9)."""
    height, width, _ = samples.shape
    raw = samples.astype(">u2").view(np.uint8).reshape(height, width * 6).tolist()
    lines = []
    for row, kind in enumerate(filters):
        line, up = raw[row], raw[row - 1] if row else [0] * len(raw[row])
        out = []
        for i, x in enumerate(line):
            a, b, c = (line[i - 6] if i >= 6 else 0), up[i], (up[i - 6] if i >= 6 else 0)
            out.append((x - [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]) % 256)
        lines.append(bytes([kind, *out]))

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"".join(lines))) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def test_round_trip_within_half_a_step():
    flow = smooth_flow(97, 203)
    assert np.abs(flow).max() > 400
    decoded, valid = decode_flow_png(encode_flow_png(flow))
    assert decoded.dtype == np.float32 and decoded.shape == flow.shape
    assert valid.all()
    assert np.abs(decoded - flow).max() <= 1 / 128 + 1e-6


def test_invalid_vectors_are_marked_and_decode_as_nan():
    flow = smooth_flow(6, 8, amplitude=20)
    bad = {
        (0, 0): (np.nan, 1.0),
        (1, 2): (2.0, np.inf),
        (2, 3): (-np.inf, 0.0),
        (3, 4): (600.0, 0.0),
        (4, 5): (0, -600),
    }
    for (y, x), vector in bad.items():
        flow[y, x] = vector
    flow[5, 7] = (-512.0, 511.984375)  # the two extremes that still fit
    decoded, valid = decode_flow_png(encode_flow_png(flow))
    expected_valid = np.ones(flow.shape[:2], bool)
    for y, x in bad:
        expected_valid[y, x] = False
    np.testing.assert_array_equal(valid, expected_valid)
    assert np.isnan(decoded[~valid]).all() and not np.isnan(decoded[valid]).any()
    np.testing.assert_array_equal(decoded[5, 7], [-512.0, 511.984375])
    # Invalid vectors are stored as zero flow, read straight from the samples.
    _, payload = next(c for c in chunks(encode_flow_png(flow)) if c[0] == b"IDAT")
    raw = np.frombuffer(zlib.decompress(payload), np.uint8).reshape(6, 1 + 8 * 6)
    rows = np.cumsum(raw[:, 1:], axis=0, dtype=np.uint8)  # every row uses "Up"
    samples = rows.view(">u2").reshape(6, 8, 3)
    assert (samples[0, 0] == [2**15, 2**15, 0]).all() and (samples[3, 4] == [2**15, 2**15, 0]).all()


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (5, 3), (1, 17)])
def test_tiny_sizes(shape):
    flow = smooth_flow(*shape, amplitude=50, seed=3)
    data = encode_flow_png(flow)
    decoded, valid = decode_flow_png(data)
    assert decoded.shape == (*shape, 2) and valid.shape == shape and valid.all()
    assert np.abs(decoded - flow).max() <= 1 / 128 + 1e-6
    assert Image.open(io.BytesIO(data)).size == (shape[1], shape[0])


def test_pil_accepts_the_file_and_reads_the_same_high_bytes():
    flow = smooth_flow(40, 56, amplitude=300, seed=1)
    expected = np.concatenate([stored(flow), np.ones((40, 56, 1), np.uint16)], axis=-1)
    expected[3, 4] = (2**15, 2**15, 0)
    flow[3, 4] = np.nan
    data = encode_flow_png(flow, lambda raw: zlib.compress(raw, 9))
    Image.open(io.BytesIO(data)).verify()  # structure, chunk order and CRCs
    image = Image.open(io.BytesIO(data))
    assert image.size == (56, 40) and image.mode == "RGB"  # PIL reads 16-bit RGB as 8-bit
    np.testing.assert_array_equal(np.asarray(image), (expected >> 8).astype(np.uint8))


def test_file_layout_by_hand():
    flow = smooth_flow(4, 3, amplitude=100, seed=2)
    found = chunks(encode_flow_png(flow))
    assert [kind for kind, _ in found] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", found[0][1]) == (3, 4, 16, 2, 0, 0, 0)
    raw = np.frombuffer(zlib.decompress(found[1][1]), np.uint8).reshape(4, 1 + 3 * 6)
    assert (raw[:, 0] == 2).all()  # filter "Up" on every row
    samples = np.cumsum(raw[:, 1:], axis=0, dtype=np.uint8).view(">u2").reshape(4, 3, 3)
    np.testing.assert_array_equal(samples[..., :2], stored(flow))
    assert (samples[..., 2] == 1).all()


@pytest.mark.parametrize("filters", [[0] * 5, [1] * 5, [2, 0, 1, 2, 2], [3] * 5, [4] * 5, [4, 3, 2, 1, 0]])
def test_decodes_independently_written_files(filters):
    rng = np.random.default_rng(7)
    samples = rng.integers(0, 65536, size=(5, 4, 3)).astype(np.uint16)
    samples[..., 2] = rng.integers(0, 2, size=(5, 4))
    decoded, valid = decode_flow_png(handmade_png(samples, filters))
    np.testing.assert_array_equal(valid, samples[..., 2] == 1)
    expected = (samples[..., :2].astype(np.float64) - 2**15) / 64
    np.testing.assert_array_equal(decoded[valid], expected[valid])
    assert np.isnan(decoded[~valid]).all()


def test_filter_zero_file_bytes_by_hand():
    samples = np.array([[[0x1234, 0xFF01, 1], [0x8000, 0x0000, 0]]], np.uint16)
    data = handmade_png(samples, [0])
    idat = next(payload for kind, payload in chunks(data) if kind == b"IDAT")
    assert zlib.decompress(idat) == bytes([0, 0x12, 0x34, 0xFF, 0x01, 0, 1, 0x80, 0, 0, 0, 0, 0])
    decoded, valid = decode_flow_png(data)
    np.testing.assert_array_equal(valid, [[True, False]])
    np.testing.assert_array_equal(decoded[0, 0], [(0x1234 - 2**15) / 64, (0xFF01 - 2**15) / 64])


def test_decodes_what_libpng_writes(tmp_path):
    """OpenCV writes through libpng, which picks its filters row by row (Paeth among them), as
    KITTI's devkit does. It writes in a fresh interpreter: decord, imported by the test session,
    puts an old zlib into the process's symbols, which breaks libpng."""
    import subprocess
    import sys

    pytest.importorskip("cv2")
    flow = smooth_flow(61, 83, amplitude=200, seed=5)
    samples = np.concatenate([stored(flow), np.ones((61, 83, 1), np.uint16)], axis=-1)
    samples[7, 9] = (2**15, 2**15, 0)  # one invalid vector
    np.save(tmp_path / "samples.npy", samples)
    write = (
        "import sys, cv2, numpy as np; samples = np.load(sys.argv[1] + '/samples.npy')\n"
        "for level in (1, 9):\n"
        "    cv2.imwrite(f'{sys.argv[1]}/{level}.png', samples[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, level])"
    )
    subprocess.run([sys.executable, "-c", write, str(tmp_path)], check=True)
    kinds = set()
    for level in (1, 9):
        data = (tmp_path / f"{level}.png").read_bytes()
        raw = zlib.decompress(b"".join(payload for kind, payload in chunks(data) if kind == b"IDAT"))
        kinds |= set(np.frombuffer(raw, np.uint8).reshape(61, -1)[:, 0])
        decoded, valid = decode_flow_png(data)
        np.testing.assert_array_equal(valid, samples[..., 2] == 1)
        np.testing.assert_array_equal(decoded[valid], ((samples[..., :2].astype(np.float64) - 2**15) / 64)[valid])
    assert kinds & {3, 4}, f"libpng used only filters {kinds}: the test would not cover Average or Paeth"


def test_other_pngs_are_refused_with_a_pointer():
    buffer = io.BytesIO()
    Image.new("RGB", (4, 3)).save(buffer, format="PNG")
    with pytest.raises(ValueError, match="bit depth 8.*cv2.imread"):
        decode_flow_png(buffer.getvalue())
    with pytest.raises(ValueError, match="not a PNG"):
        decode_flow_png(b"GIF89a")
    good = bytearray(encode_flow_png(np.zeros((2, 2, 2))))
    good[-20] ^= 0xFF  # inside the IDAT payload
    with pytest.raises(ValueError, match="CRC"):
        decode_flow_png(bytes(good))


def test_interlaced_is_refused():
    data = bytearray(encode_flow_png(np.zeros((2, 2, 2))))
    header = bytes(data[12:29])[:-1] + b"\x01"  # IHDR kind + payload with interlace = 1
    data[12:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(header))
    with pytest.raises(ValueError, match="interlaced"):
        decode_flow_png(bytes(data))


def test_a_filter_type_beyond_paeth_is_refused():
    data = handmade_png(np.zeros((2, 2, 3), np.uint16), [0, 0])
    header, rest = data.split(b"IDAT", 1)
    raw = bytearray(zlib.decompress(rest[: struct.unpack(">I", header[-4:])[0]]))
    raw[1 + 2 * 6] = 5  # second row's filter byte
    payload = zlib.compress(bytes(raw))
    idat = struct.pack(">I", len(payload)) + b"IDAT" + payload + struct.pack(">I", zlib.crc32(b"IDAT" + payload))
    with pytest.raises(ValueError, match="filter type 5 on row 1"):
        decode_flow_png(header[:-4] + idat + data[data.index(b"IEND") - 4 :])


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"\[H, W, 2\]"):
        encode_flow_png(np.zeros((4, 4, 3)))
