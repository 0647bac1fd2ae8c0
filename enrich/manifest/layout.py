"""Where everything lives under OUTPUT: the one module that knows the layout.

OUTPUT/TABLE/_delta_log/        each table's Delta Lake transaction log (`enrich.manifest.delta`)
OUTPUT/frames/KK/KEY.RUN.parquet  a clip's frames, one file per clip and run that made it (KEY =
                                sha1(clip_id)[:20], KK its first two, RUN the run id)
OUTPUT/TABLE/KK/KEY.RUN.parquet the same, for a stage with a table of its own (captions/)
OUTPUT/clips/RUN-SEQ[-N].parquet one row per clip: a file per commit of a run, and the rows that a
                                later commit left of it
OUTPUT/runs/RUN_ID/             each run's config.json and summary.json
OUTPUT/tags/NAME.json           a named snapshot (`enrich tag`): the tables' versions
OUTPUT/_staging/RUN_ID/KEY/     a running run's parts, per clip (readers skip names starting with _)
OUTPUT/_lock.json               the lock a run holds on OUTPUT
OUTPUT/report.html              `enrich report`'s page, by default
"""

from __future__ import annotations

import hashlib
import uuid

from enrich.storage import join

LOCK = "_lock.json"  # a leading underscore: dataset readers skip it


def clip_key(clip_id: str) -> str:
    """A file-system-safe, fixed-length name for a clip's files."""
    return hashlib.sha1(clip_id.encode()).hexdigest()[:20]


def key_of(path: str) -> str:
    """The clip key of a per-clip table's file (`clip_path`)."""
    return path.rsplit("/", 1)[-1].split(".", 1)[0]


def table_dir(output: str, table: str) -> str:
    return join(output, table)


def clip_path(clip_id: str, run_id: str) -> str:
    """A clip's file in a per-clip table (frames, or a stage's own: `enrich.manifest.schema.TABLES`),
    relative to the table: a new name for each run, so that the versions before it keep theirs."""
    key = clip_key(clip_id)
    return f"{key[:2]}/{key}.{run_id}.parquet"


def clips_path(run_id: str, seq: int, piece: int | None = None) -> str:
    """A new file of the clips table (or of another table of batch files), relative to it: commit
    `seq` of a run, or what is left of an older file (`piece`) once that commit took some of its
    clips. The random part makes it new whatever wrote before: a live file is never overwritten."""
    return f"{run_id}-{seq:05d}" + ("" if piece is None else f"-{piece}") + f"-{uuid.uuid4().hex[:8]}.parquet"


def log_file(output: str, table: str, version: int) -> str:
    return join(output, table, "_delta_log", f"{version:020d}.json")


def legacy_clips_file(output: str) -> str:
    """The clips table of a manifest from before Delta Lake (version 4 and older)."""
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


def tag_file(output: str, name: str) -> str:
    return join(output, "tags", f"{name}.json")


def tags_dir(output: str) -> str:
    return join(output, "tags")


def lock_file(output: str) -> str:
    return join(output, LOCK)


def report_file(output: str) -> str:
    return join(output, "report.html")
