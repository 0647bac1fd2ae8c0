from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest

from enrich.cli import main


@pytest.fixture
def run(ray_session, capsys):
    """`enrich run ...` in-process, sharing the session's Ray; returns (exit code, stdout, stderr)."""

    def _run(*args: str):
        code = main(["run", *map(str, args)])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture
def bucket(s3):
    """A new, empty bucket on the session's moto S3 server."""
    name = f"enrich-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def small_input(tmp_path, fixtures_dir) -> Path:
    """Two small real clips in a nested folder layout."""
    folder = tmp_path / "input"
    (folder / "aerial").mkdir(parents=True)
    shutil.copy(fixtures_dir / "tiny_2fps.mp4", folder / "aerial" / "field.mp4")
    shutil.copy(fixtures_dir / "davis_rollercoaster.mp4", folder / "coaster.mp4")
    return folder


def read_table(path):
    """A manifest table (OUTPUT/NAME), local or s3://, at its latest version, read the way users
    read a Delta table: with deltalake. None when it was never written."""
    from deltalake import DeltaTable

    from enrich.manifest import delta

    path = str(path).rstrip("/")
    output, name = path.rsplit("/", 1)
    if not delta.is_table(output, name):
        return None
    return DeltaTable(path, storage_options=delta.storage_options(path)).to_pyarrow_table()


def _s3fs():
    import os

    import pyarrow.fs as pafs

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    return pafs.S3FileSystem(
        endpoint_override=endpoint,
        scheme="http",
        region="us-east-1",
        access_key=os.environ["AWS_ACCESS_KEY_ID"],
        secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
    )


def decode_depth(row) -> np.ndarray:
    """The README's decode formula."""
    from PIL import Image

    codes = np.asarray(Image.open(io.BytesIO(row["depth_png"]))).astype(np.uint16)
    depth = codes * row["depth_scale"] + row["depth_offset"]
    return np.where(codes == 0, np.nan, depth)
