"""End to end against a real S3 endpoint: moto's server on 127.0.0.1, reached over HTTP by the
driver and every Ray worker, through the standard AWS settings."""

import pytest

from enrich import pipeline
from enrich.config import build
from tests.conftest import FAKE_KEY_ID, FAKE_SECRET
from tests.e2e.conftest import decode_depth, read_table

pytestmark = pytest.mark.slow


def upload_folder(s3, bucket, folder, prefix):
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


def test_s3_in_s3_out_with_model_from_s3(run, s3, bucket, fixtures_dir, tiny_depth_model, bad_clips, tmp_path):
    s3.upload_file(str(fixtures_dir / "tiny_2fps.mp4"), bucket, "clips/aerial/field.mp4")
    s3.upload_file(str(fixtures_dir / "one_fps_stills.mp4"), bucket, "clips/stills.mp4")
    s3.upload_file(str(bad_clips / "truncated.mp4"), bucket, "clips/broken.mp4")
    upload_folder(s3, bucket, tiny_depth_model, "models/tiny")
    model = f"s3://{bucket}/models/tiny"
    out = f"s3://{bucket}/manifests/run1"

    code, stdout, stderr = run(
        f"s3://{bucket}/clips", out, "--depth-model", model, "--fps", 1, "--max-frames-per-clip", 3
    )
    assert code == 1, stdout + stderr
    clips = {r["clip_id"]: r for r in read_table(f"{out}/clips").to_pylist()}
    assert set(clips) == {"aerial/field.mp4", "stills.mp4", "broken.mp4"}
    assert clips["aerial/field.mp4"]["status"] == "ok" and clips["stills.mp4"]["n_frames"] == 3
    assert clips["broken.mp4"]["error"].startswith("decode: cannot open as a video")
    head = s3.head_object(Bucket=bucket, Key="clips/stills.mp4")
    assert clips["stills.mp4"]["etag"] == head["ETag"].strip('"')
    assert clips["stills.mp4"]["clip_uri"] == f"s3://{bucket}/clips/stills.mp4"

    frames = read_table(f"{out}/frames")
    assert frames.num_rows == 3 + 3
    row = frames.to_pylist()[0]
    assert decode_depth(row).shape == (row["height"], row["width"])
    assert row["depth_model"].startswith(model + "@")

    # Nothing written, printed or saved carries the credentials.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="manifests/")["Contents"]]
    assert not any("_staging" in k or "_lock" in k for k in keys)
    for key in keys:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert FAKE_SECRET.encode() not in body and FAKE_KEY_ID.encode() not in body, key
    assert FAKE_SECRET not in stdout + stderr and FAKE_KEY_ID not in stdout + stderr

    code, _, stderr = run(f"s3://{bucket}/clips", out, "--depth-model", model, "--fps", 1, "--max-frames-per-clip", 3)
    assert code == 1 and "1 to process (1 failed), 2 up to date" in stderr
    assert read_table(f"{out}/frames").num_rows == 6

    # One run per OUTPUT on S3 too: the lock is a conditional PUT (If-None-Match: *).
    from enrich.lock import Lock

    holder = Lock(out).acquire()
    try:
        code, _, stderr = run(f"s3://{bucket}/clips", out, "--depth-model", model, "--fps", 1)
        assert code == 2 and "is held by another run" in stderr
    finally:
        holder.release()

    # DuckDB over the S3 datasets equals pyarrow reading the same objects.
    from enrich.query import query

    got = query(out, "SELECT clip_id, status, n_frames FROM clips ORDER BY clip_id").to_pylist()
    want = read_table(f"{out}/clips").select(["clip_id", "status", "n_frames"]).sort_by("clip_id").to_pylist()
    assert got == want
    assert query(out, "SELECT count(*) AS n FROM frames WHERE NOT flags.exposure")["n"][0].as_py() == 6


def test_object_deleted_after_listing_fails_alone(ray_session, s3, bucket, fixtures_dir, tiny_depth_model):
    s3.upload_file(str(fixtures_dir / "tiny_2fps.mp4"), bucket, "in/a.mp4")
    s3.upload_file(str(fixtures_dir / "tiny_2fps.mp4"), bucket, "in/b.mp4")
    cfg = build({"input": f"s3://{bucket}/in", "output": f"s3://{bucket}/out", "depth_model": str(tiny_depth_model)})
    prep = pipeline.prepare(cfg)
    s3.delete_object(Bucket=bucket, Key="in/b.mp4")
    summary = pipeline.execute(prep, log=lambda m: None)
    assert summary.clips_ok == 1 and summary.clips_failed == 1
    assert summary.failures["b.mp4"].startswith("read: object does not exist")


def test_a_depth_anything_3_checkpoint_from_an_s3_prefix(run, s3, bucket, fixtures_dir, tmp_path):
    """DA3's hub layout (config.json naming the preset, model.safetensors) staged from S3 per node."""
    from enrich.stages.depth import da3

    folder = tmp_path / "DA3-SMALL"
    da3.build_random("da3-small", str(folder))
    upload_folder(s3, bucket, folder, "models/da3")
    s3.upload_file(str(fixtures_dir / "tiny_2fps.mp4"), bucket, "clips/field.mp4")
    model, out = f"s3://{bucket}/models/da3", f"s3://{bucket}/manifests/da3"
    code, stdout, stderr = run(f"s3://{bucket}/clips", out, "--depth-model", model, "--max-frames-per-clip", 2)
    assert code == 0, stdout + stderr
    rows = read_table(f"{out}/frames").to_pylist()
    assert len(rows) == 2 and {r["depth_kind"] for r in rows} == {"relative_depth"}
    assert all(r["depth_model"].startswith(model + "@") and r["intrinsics"]["fx"] > 0 for r in rows)
