"""A run made with `random:` smoke models says so: in its summary, in `enrich status` and as a banner
in the report, which also names the runs and models behind the rows."""

from enrich.pipeline import smoke_notes
from enrich.report import _provenance


def test_summary_names_the_smoke_models_only():
    notes = smoke_notes({"depth": "random:depth-anything-v2-small", "flow": "raft_large"})
    assert len(notes) == 1 and "SMOKE MODELS" in notes[0] and "depth random:depth-anything-v2-small" in notes[0]
    assert "raft_large" not in notes[0]
    assert smoke_notes({"depth": "depth-anything/Depth-Anything-V2-Small-hf"}) == []


def test_report_banner_and_provenance():
    clip = {"run_id": "20261201T000000Z-abc123", "depth_model": "random:depth-anything-v2-small@seed0",
            "flow_model": None, "pose_model": None}  # fmt: skip
    page = "".join(_provenance([clip, dict(clip)]))
    assert "smoke models" in page.lower() and "20261201T000000Z-abc123" in page
    assert "depth: random:depth-anything-v2-small@seed0" in page and "<td>2</td>" in page
    real = "".join(_provenance([{**clip, "depth_model": "depth-anything/Depth-Anything-V2-Small-hf@abc"}]))
    assert "smoke models" not in real.lower() and "Depth-Anything-V2-Small-hf@abc" in real
