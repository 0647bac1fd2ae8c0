"""The training readers (`enrich.data`) and snapshots (`--as-of`), on local disk and on moto's S3:
a DataLoader with workers, a Ray Data dataset, and a training set pinned to a version that a later
run replaced."""

import json

import numpy as np
import pytest

from enrich.cli import main
from enrich.data import FrameDataset, ray_dataset
from enrich.manifest import delta
from tests.e2e.conftest import decode_depth, read_table

pytestmark = pytest.mark.slow

SELECT = "SELECT clip_id, frame_index FROM frames WHERE clip_id = 'coaster.mp4' AND frame_index > 0"
SMOKE = ["--stages", "depth,flow", "--depth-model", "random:depth-anything-v2-small",
         "--flow-model", "random:raft_small", "--fps", 2, "--max-frames-per-clip", 4]  # fmt: skip


def check_items(items: list[dict], frames) -> None:
    """Each item is its frame's stored row, decoded with the README's formulas."""
    rows = {(r["clip_id"], r["frame_index"]): r for r in frames.to_pylist()}
    want = sorted(k for k in rows if k[0] == "coaster.mp4" and k[1] > 0)
    assert sorted((i["clip_id"], i["frame_index"]) for i in items) == want and len(want) == 3
    for item in items:
        row = rows[item["clip_id"], item["frame_index"]]
        expected = decode_depth(row)
        assert np.nanstd(expected) > 1e-3 * np.nanmax(np.abs(expected))  # a map that varies, not noise
        np.testing.assert_array_equal(item["depth"], expected.astype(np.float32))
        assert item["rgb"].dtype == np.uint8 and item["rgb"].shape[2] == 3 and max(item["rgb"].shape) == 256
        assert item["flags"] == row["flags"]
        if item["flow"] is not None:
            assert item["flow"].shape == (row["height"], row["width"], 2)
    assert sum(i["flow"] is not None for i in items) == 2  # the last sampled frame has no next frame


def test_readers_over_s3_with_dataloader_workers_and_ray_data(run, s3, bucket, small_input):
    import torch

    for path in sorted(small_input.rglob("*.mp4")):
        s3.upload_file(str(path), bucket, f"in/{path.relative_to(small_input).as_posix()}")
    out = f"s3://{bucket}/manifest"
    code, stdout, stderr = run(f"s3://{bucket}/in", out, *SMOKE)
    assert code == 0, stdout + stderr
    frames = read_table(f"{out}/frames")

    dataset = FrameDataset(out, SELECT, fields=("rgb", "depth", "flow", "flags"))
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2, collate_fn=lambda x: x)
    check_items(list(loader), frames)
    assert dataset.versions == delta.snapshot(out)[1].record()  # the latest, when none is asked for

    items = ray_dataset(out, SELECT, fields=("rgb", "depth", "flow", "flags")).take_all()
    check_items(items, frames)

    # compaction on S3: frames_meta then serves the selection, a tag pins it, nothing changes
    assert main(["compact", out]) == 0
    assert main(["tag", out, "first"]) == 0
    tagged = FrameDataset(out, SELECT, fields=("rgb", "depth", "flow", "flags"), as_of="first")
    check_items([tagged[i] for i in range(len(tagged))], frames)
    assert delta.is_table(out, "frames_meta")


def test_a_training_set_pinned_to_a_version_reads_it_after_a_later_run(run, small_input, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run(small_input, out, *SMOKE)
    assert code == 0, stdout + stderr
    first_frames, first_clips = read_table(out / "frames"), read_table(out / "clips")
    pinned = FrameDataset(str(out), SELECT, fields=("depth", "flags"))
    version = pinned.versions["clips"]

    code, stdout, stderr = run(small_input, out, *SMOKE, "--force")  # every clip again: new files, new run id
    assert code == 0, stdout + stderr
    assert read_table(out / "clips")["run_id"].to_pylist() != first_clips["run_id"].to_pylist()

    again = FrameDataset(str(out), SELECT, fields=("depth", "flags"), as_of=version)
    assert [again[i]["frame_index"] for i in range(len(again))] == [pinned[i]["frame_index"] for i in range(3)]
    for i in range(len(again)):
        np.testing.assert_array_equal(again[i]["depth"], pinned[i]["depth"])
    assert main(["query", str(out), "SELECT DISTINCT run_id FROM frames", "--as-of", str(version),
                 "--format", "json"]) == 0  # fmt: skip
    assert capsys.readouterr().out == json.dumps({"run_id": first_frames["run_id"][0].as_py()}) + "\n"
    assert main(["query", str(out), "SELECT count(*) AS n FROM clips", "--as-of", "1999-01-01T00:00:00Z"]) == 2
    assert "the manifest did not exist yet" in capsys.readouterr().err
