"""Where everything lives under OUTPUT: the one module that knows the layout.

OUTPUT/frames/KK/KEY.parquet    one file per clip (KEY = sha1(clip_id)[:20], KK its first two)
OUTPUT/TABLE/KK/KEY.parquet     the same, for a stage with a table of its own (captions/)
OUTPUT/clips/clips.parquet      one row per clip
OUTPUT/runs/RUN_ID/             each run's config.json and summary.json
OUTPUT/_staging/RUN_ID/KEY/     a running run's parts, per clip (readers skip names starting with _)
OUTPUT/_lock.json               the lock a run holds on OUTPUT
OUTPUT/report.html              `enrich report`'s page, by default
"""

from __future__ import annotations

import hashlib

from enrich.storage import join

LOCK = "_lock.json"  # a leading underscore: dataset readers skip it


def clip_key(clip_id: str) -> str:
    """A file-system-safe, fixed-length name for a clip's files."""
    return hashlib.sha1(clip_id.encode()).hexdigest()[:20]


def table_dir(output: str, table: str) -> str:
    return join(output, table)


def frames_file(output: str, clip_id: str) -> str:
    return clip_file(output, "frames", clip_id)


def clip_file(output: str, table: str, clip_id: str) -> str:
    """A clip's file in a per-clip table: frames, or a stage's own (`enrich.manifest.schema.TABLES`)."""
    key = clip_key(clip_id)
    return join(output, table, key[:2], f"{key}.parquet")


def clips_file(output: str) -> str:
    return join(output, "clips", "clips.parquet")


def runs_dir(output: str) -> str:
    return join(output, "runs")


def run_file(output: str, run_id: str, name: str) -> str:
    return join(output, "runs", run_id, name)


def staging_root(output: str) -> str:
    return join(output, "_staging")


def staging_dir(output: str, run_id: str) -> str:
    return join(staging_root(output), run_id)


def clip_parts(staging: str, clip_id: str) -> str:
    """Where a clip's staged parts go, under a run's staging folder."""
    return join(staging, clip_key(clip_id))


def lock_file(output: str) -> str:
    return join(output, LOCK)


def report_file(output: str) -> str:
    return join(output, "report.html")
