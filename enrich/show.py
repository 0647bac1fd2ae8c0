"""`enrich show OUTPUT CLIP_ID FRAME_INDEX -o file.png`: one frame beside what the manifest says of it.

Panels, left to right: the frame (from the source clip at full size, or the stored thumbnail when the
clip cannot be read any more) with its people drawn when pose ran, the colourised depth, and the
flow to the next sampled frame when flow ran.
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from enrich import storage
from enrich.errors import UsageError
from enrich.manifest import delta
from enrich.manifest.commit import require_manifest
from enrich.ops import visual


def frame_row(output: str, clip_id: str, frame_index: int) -> dict:
    require_manifest(output)
    uris = delta.clip_files(output, "frames", [clip_id])
    if not uris:
        raise UsageError(
            f"no frames of clip {clip_id!r} in {output} (see: enrich query {output} 'SELECT * FROM clips')"
        )
    table = pq.read_table(storage.read_arrow(uris[clip_id]))
    rows = table.filter(pc.equal(table["frame_index"], frame_index)).to_pylist()
    if not rows:
        have = table["frame_index"].to_pylist()
        raise UsageError(
            f"clip {clip_id!r} has no sampled frame {frame_index} (it has {have[:10]}{'...' if len(have) > 10 else ''})"
        )
    return rows[0]


def source_frame(row: dict) -> np.ndarray:
    """The frame from its clip, at full size; the stored thumbnail if the clip cannot be read."""
    try:
        from enrich.ops import video

        with storage.local_copy(row["clip_uri"]) as path:
            return video.open_video(path)[row["frame_index"]].asnumpy()
    except Exception:
        if not row.get("thumb_jpeg"):
            raise UsageError(f"cannot read {row['clip_uri']} and the row has no thumbnail") from None
        with Image.open(io.BytesIO(row["thumb_jpeg"])) as img:
            return np.asarray(img.convert("RGB"))


def render(output: str, clip_id: str, frame_index: int) -> Image.Image:
    output = storage.normalize(output)
    with storage.s3_errors(output):
        row = frame_row(output, clip_id, frame_index)
        frame = source_frame(row)
    if row.get("pose") is not None:
        sx, sy = frame.shape[1] / row["width"], frame.shape[0] / row["height"]  # thumbnail fallback
        people = [
            {"bbox": [p["bbox"][0] * sx, p["bbox"][1] * sy, p["bbox"][2] * sx, p["bbox"][3] * sy],
             "keypoints": [{"x": k["x"] * sx, "y": k["y"] * sy, "score": k["score"]} for k in p["keypoints"]]}
            for p in row["pose"]
        ]  # fmt: skip
        frame = visual.draw_pose(frame, people)
    panels = [frame]
    depth = visual.depth_rgb(row)
    if depth is not None:
        panels.append(depth)
    if row.get("flow_png") is not None:
        from enrich.ops.flowpng import decode_flow_png

        panels.append(visual.flow_rgb(*decode_flow_png(row["flow_png"])))
    return visual.side_by_side(panels)


def write_png(image: Image.Image, target: str) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    storage.write_bytes(target, buffer.getvalue())
