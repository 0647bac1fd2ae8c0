"""Training-set readers over a manifest: a PyTorch Dataset and a Ray Data dataset of selected frames.

A selection is SQL over the manifest (`enrich.query`) that returns at least `clip_id` and
`frame_index`, such as

    SELECT clip_id, frame_index FROM frames WHERE NOT flags.motion_blur AND NOT flags.exposure

It runs once, against one snapshot of the manifest, and the readers fetch from that snapshot only
the frames selected: each clip's file is found in the frames table's log, and a frame is read from
its row group (32 frames), so the depth and flow PNGs of frames not selected are never downloaded.
Pin a training set with `as_of` (the `versions` a reader reports, or a run's summary.json).

    from enrich.data import FrameDataset
    frames = FrameDataset("s3://bucket/manifest", SQL, fields=("rgb", "depth", "flags"))
    loader = torch.utils.data.DataLoader(frames, batch_size=None, num_workers=4)

Each item is a dict: `clip_id`, `frame_index`, `timestamp_s`, and the `fields` asked for:
  rgb    uint8 [H, W, 3]: the stored thumbnail (longest side 256), or with `rgb="clip"` the frame
         decoded from the source clip at full size
  depth  float32 [H, W] in the units of `depth_kind` (`decode_depth`), NaN where there is no value
  flow   float32 [H, W, 2] to the next sampled frame, in pixels, NaN where invalid (`decode_flow`)
  flags, audit, pose, intrinsics, depth_kind: as stored (README: The manifest)
A field the manifest does not have for a frame (its stage did not run) is None.
"""

from __future__ import annotations

import io
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from enrich import storage
from enrich.errors import UsageError
from enrich.manifest import delta

ORDER = [("clip_id", "ascending"), ("frame_index", "ascending")]
FIELDS = ("rgb", "depth", "flow", "flags", "audit", "pose", "intrinsics", "depth_kind")
# The frames columns each field reads
COLUMNS = {
    "rgb": ("thumb_jpeg",),
    "depth": ("depth_png", "depth_scale", "depth_offset", "depth_kind"),
    "flow": ("flow_png",),
    "flags": ("flags",),
    "audit": ("audit",),
    "pose": ("pose",),
    "intrinsics": ("intrinsics",),
    "depth_kind": ("depth_kind",),
}


def decode_depth(png: bytes | None, scale: float | None, offset: float | None) -> np.ndarray | None:
    """A stored depth map, decoded: float32 [H, W] = png * depth_scale + depth_offset, NaN where the
    16-bit code is 0 (no value). What the values mean is the row's `depth_kind`
    (`enrich.manifest.kinds`): relative disparity, or depth in metres, for example."""
    if not png:
        return None
    from enrich.ops.quantize import decode_png16, dequantize

    return dequantize(decode_png16(png), scale, offset)


def decode_flow(png: bytes | None) -> np.ndarray | None:
    """A stored flow field, decoded: float32 [H, W, 2] (u, v in pixels of the frame) = (png - 2**15)
    / 64 for each of the KITTI PNG's first two channels, NaN where its third (valid) is 0."""
    if not png:
        return None
    from enrich.ops.flowpng import decode_flow_png

    return decode_flow_png(png)[0]


def decode_rgb(jpeg: bytes | None) -> np.ndarray | None:
    """A stored thumbnail, decoded: uint8 [H, W, 3]."""
    if not jpeg:
        return None
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


class Selection:
    """The frames a SQL selection names, at one snapshot, and where each clip's file is."""

    def __init__(self, output: str, sql: str, as_of: str | int | None = None):
        from enrich.query import query_snapshot

        self.output = storage.normalize(output)
        table, self.versions = query_snapshot(self.output, sql, as_of)
        missing = sorted({"clip_id", "frame_index"} - set(table.column_names))
        if missing:
            raise UsageError(f"the selection must return clip_id and frame_index (it lacks {', '.join(missing)})")
        table = table.select(["clip_id", "frame_index"]).sort_by(ORDER)
        ids, frames = table["clip_id"].to_pylist(), table["frame_index"].to_pylist()
        self.frames: list[tuple[str, int]] = list(zip(ids, frames, strict=True))
        self.files = delta.clip_files(self.output, "frames", {c for c, _ in self.frames}, self.versions)
        gone = [c for c, _ in self.frames if c not in self.files]
        if gone:
            raise UsageError(f"the selection names frames of clips the manifest has no frames of: {gone[0]!r}")

    def by_clip(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for clip_id, frame in self.frames:
            out.setdefault(clip_id, []).append(frame)
        return out


def read_frames(uri: str, frames: Iterable[int], fields: tuple[str, ...], rgb: str = "thumb") -> list[dict]:
    """The items of `frames` of one clip's file: only the row groups that hold them are read."""
    wanted = sorted(set(frames))
    columns = ["clip_id", "clip_uri", "frame_index", "timestamp_s"]
    columns += [c for f in fields for c in COLUMNS[f] if c not in columns and not (f == "rgb" and rgb == "clip")]
    f = pq.ParquetFile(storage.open_input(uri))
    names = set(f.schema_arrow.names)
    index = f.schema_arrow.get_field_index("frame_index")
    groups = []
    for g in range(f.num_row_groups):
        stats = f.metadata.row_group(g).column(index).statistics
        if stats is None or not stats.has_min_max or any(stats.min <= w <= stats.max for w in wanted):
            groups.append(g)
    table = f.read_row_groups(groups, columns=[c for c in columns if c in names]) if groups else pa.table({})
    table = table.filter(pc.is_in(table["frame_index"], value_set=pa.array(wanted, pa.int64())))
    rows = table.to_pylist()
    video = _video(rows[0]["clip_uri"]) if rows and "rgb" in fields and rgb == "clip" else None
    return [_item(row, fields, video) for row in rows]


def _video(uri: str):
    from enrich.ops import video

    with storage.local_copy(uri) as path:
        return video.open_video(path)  # decord reads what it needs of the local copy while it is open


def _item(row: dict, fields: tuple[str, ...], video) -> dict:
    item = {"clip_id": row["clip_id"], "frame_index": row["frame_index"], "timestamp_s": row["timestamp_s"]}
    for field in fields:
        if field == "rgb":
            frame = video[row["frame_index"]].asnumpy() if video is not None else None
            item["rgb"] = frame if frame is not None else decode_rgb(row.get("thumb_jpeg"))
        elif field == "depth":
            item["depth"] = decode_depth(row.get("depth_png"), row.get("depth_scale"), row.get("depth_offset"))
        elif field == "flow":
            item["flow"] = decode_flow(row.get("flow_png"))
        else:
            item[field] = row.get(field)
    return item


def _fields(fields: Iterable[str]) -> tuple[str, ...]:
    fields = tuple(fields)
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise UsageError(f"unknown field {unknown[0]!r}; the fields are {', '.join(FIELDS)}")
    return fields


class FrameDataset:
    """A map-style PyTorch dataset of the frames a SQL selection names (see the module's doc).

    It is a `torch.utils.data.Dataset` by protocol (`__len__`, `__getitem__`), so torch is not
    imported here. With DataLoader workers, each opens the files it reads itself; consecutive
    indices are frames of one clip in frame order, so a sequential sampler reads each row group once
    per worker batch."""

    def __init__(self, output: str, sql: str, fields=("rgb", "depth"), as_of: str | int | None = None, rgb="thumb"):
        if rgb not in ("thumb", "clip"):
            raise UsageError(f"rgb={rgb!r}: 'thumb' (the stored thumbnail) or 'clip' (decoded from the clip)")
        self.selection = Selection(output, sql, as_of)
        self.fields, self.rgb = _fields(fields), rgb

    @property
    def versions(self) -> dict:
        """The snapshot read: pass `versions['clips']` as `as_of` to read the same frames again."""
        return self.selection.versions.record()

    def __len__(self) -> int:
        return len(self.selection.frames)

    def __getitem__(self, i: int) -> dict:
        clip_id, frame = self.selection.frames[i]
        return read_frames(self.selection.files[clip_id], [frame], self.fields, self.rgb)[0]


def ray_dataset(output: str, sql: str, fields=("rgb", "depth"), as_of: str | int | None = None, rgb="thumb"):
    """The same frames as a Ray Data dataset, read in parallel a clip at a time: one row per frame,
    with the arrays as tensor columns (None where the frame has no value)."""
    import ray

    selection = Selection(output, sql, as_of)
    fields = _fields(fields)
    clips = [{"uri": selection.files[c], "frames": f} for c, f in selection.by_clip().items()]

    def fetch(row: dict) -> list[dict]:
        return read_frames(row["uri"], row["frames"], fields, rgb)

    return ray.data.from_items(clips).flat_map(fetch)
