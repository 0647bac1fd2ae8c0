"""The manifest contract. Extend it; don't break it.

frames:   one row per sampled frame, one Parquet file per clip (replaced atomically)
captions: one row per caption window, one file per clip (a stage with a table of its own, `TABLES`)
clips:    one row per input clip: what content, config and model produced its rows
(where they live: `enrich.manifest.layout`)
"""

from __future__ import annotations

import pyarrow as pa

from enrich.stages import REGISTRY

FRAME_STAGES = tuple(s for s in REGISTRY.values() if not s.table)  # their columns are in frames
TABLE_STAGES = tuple(s for s in REGISTRY.values() if s.table)  # theirs, in a table of their own
# What each part of a clip's outputs is hashed as (`RunConfig.part_hashes`): frames, and each of these
PARTS = ("frames", *(s.name for s in TABLE_STAGES))

# Per-frame flags: True = depth here should not be trusted for that reason; null = not computed
# (its stage did not run, or the frame has no predecessor / successor). README: Audits.
FLAG_NAMES = (
    "transparent_reflective",
    "close_range",
    "low_texture",
    "motion_blur",
    "exposure",
    "depth_flicker",
    "flow_inconsistent",
)
FLAGS = pa.struct([(name, pa.bool_()) for name in FLAG_NAMES])
AUDIT_SCORES = (
    "sharpness",  # variance of the Laplacian of luma at 360 rows
    "luma_mean",  # 0..255
    "dark_fraction",  # pixels below luma 16
    "bright_fraction",  # pixels above luma 240
    "textureless_fraction",  # 16x16 tiles with luma std below audit.texture_std
    "specular_fraction",  # small bright colourless highlights
    "reflection_mismatch",  # strong image edges on flat depth / strong image edges
    "near_fraction",  # near-field share of the view
    "person_area",  # largest person box / frame (pose)
    "fb_inconsistent_fraction",  # forward-backward flow failures (flow)
    "flicker",  # disagreement with the previous frame after temporal processing, / depth range
    "flicker_raw",  # the same before it
    "cut_distance",  # how unlike the previous frame, 0..1 (see enrich.ops.temporal.cut_distance)
)
AUDIT = pa.struct([(name, pa.float32()) for name in AUDIT_SCORES])

FRAMES = pa.schema(
    [
        ("clip_id", pa.string()),  # the clip's path relative to INPUT, '/'-separated
        ("clip_uri", pa.string()),
        ("frame_index", pa.int64()),  # index in the decoded video stream
        ("timestamp_s", pa.float64()),  # presentation time of the frame
        ("width", pa.int32()),
        ("height", pa.int32()),
        # Each model stage's columns (declared in its package: `enrich.stages.NAME.STAGE.columns`),
        # then STAGE_model: its model spec @ revision or content hash; null when the stage did not run.
        *(f for stage in FRAME_STAGES for f in (*stage.fields, (stage.model_column, pa.string()))),
        ("segment", pa.int32()),  # shot within the clip, from 0; a scene cut starts the next
        ("flags", FLAGS),
        ("audit", AUDIT),
        ("thumb_jpeg", pa.binary()),  # the frame, longest side 256 px, JPEG
        ("run_id", pa.string()),
        ("config_hash", pa.string()),  # the settings the frames were made with: clips.hashes.frames
    ]
)

# The tables of stages that keep their own (`ModelStage.table`): a row per frame the stage wrote a
# value for (in its first column), keyed like frames.
TABLE_KEY = (("clip_id", pa.string()), ("frame_index", pa.int64()), ("timestamp_s", pa.float64()))
TABLES: dict[str, pa.Schema] = {
    stage.table: pa.schema(
        [
            *TABLE_KEY,
            *stage.fields,
            (stage.model_column, pa.string()),
            ("run_id", pa.string()),
        ]
    )
    for stage in TABLE_STAGES
}

PER_CLIP = {"frames": FRAMES, **TABLES}  # the tables with a file per clip

# What the write stage stages: the published columns, plus the small per-frame summaries that the
# clip-level step reads at commit instead of the full-size maps (`enrich.stages.temporal`).
STAGED = pa.schema(
    [
        *FRAMES,
        *(f for stage in TABLE_STAGES for f in (*stage.fields, (stage.model_column, pa.string()))),
        ("depth_small", pa.list_(pa.float32())),  # depth shrunk to 96 px, row-major; null: no depth
        ("flow_small", pa.list_(pa.float32())),  # forward flow at that size, (rows, cols, 2); null: none
    ]
)

CLIPS = pa.schema(
    [
        ("clip_id", pa.string()),
        ("clip_uri", pa.string()),
        ("size_bytes", pa.int64()),
        ("etag", pa.string()),  # S3 ETag, or mtime-size fingerprint for local files
        ("status", pa.string()),  # ok | failed
        ("error", pa.string()),  # why it failed; null when ok
        ("attempts", pa.int64()),  # runs that processed this content with this config (failures retried up to a limit)
        ("n_frames", pa.int64()),  # rows of this clip in frames/
        ("source_frames", pa.int64()),  # frames in the video stream
        ("fps", pa.float64()),  # the stream's average frame rate
        ("duration_s", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        *((stage.model_column, pa.string()) for stage in REGISTRY.values()),
        *(c.field for stage in REGISTRY.values() for c in stage.clip_columns),
        ("segments", pa.int64()),  # shots found (scene cuts + 1)
        ("flicker_before", pa.float64()),  # mean frame-to-frame depth disagreement, raw ...
        ("flicker_after", pa.float64()),  # ... and after temporal processing (fraction of depth range)
        ("flag_rates", pa.struct([(name, pa.float64()) for name in FLAG_NAMES])),  # share of frames flagged
        ("run_id", pa.string()),
        ("config_hash", pa.string()),  # every part's hash, hashed (what `enrich status` calls current)
        # Each part's hash: frames, and each stage with a table of its own; `!HASH`: it failed with
        # those settings. A part whose hash differs from the current config's is redone, and only it.
        ("hashes", pa.struct([(part, pa.string()) for part in PARTS])),
        ("updated_at", pa.timestamp("us", tz="UTC")),  # Delta Lake timestamps are microseconds
        # The clips-table version whose commit wrote the row. A commit adds re-enriched clips' rows
        # without rewriting the files of their older rows; of a clip's rows the largest is current
        # (null: written before this column, when a clip had one row). `enrich.manifest.commit.current`.
        ("clips_version", pa.int64()),
    ]
)


MODEL_COLUMNS = tuple(stage.model_column for stage in REGISTRY.values())
# These travel through Ray as JSON strings, typed by the writer; these are b"", "" or NaN for null.
JSON_COLUMNS = (*(c.name for s in REGISTRY.values() for c in s.columns if c.json), "flags", "audit")
EMPTY_IS_NULL = tuple(c.name for s in REGISTRY.values() for c in s.columns if c.empty_is_null)
