"""Write: stage each clip's finished rows as Parquet parts, and report per-clip counts.

Parts go under OUTPUT/_staging/RUN_ID/CLIP_KEY/, invisible to manifest readers. The driver commits
a clip (one atomic file in frames/, and one in each table of its stages with their own) once the
counts say all of its rows have been staged.
"""

from __future__ import annotations

import io
import json
import uuid
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from enrich import storage
from enrich.manifest.commit import COMPRESSION
from enrich.manifest.layout import clip_parts
from enrich.manifest.schema import EMPTY_IS_NULL, JSON_COLUMNS, MODEL_COLUMNS, STAGED
from enrich.stages.base import ERROR, Stage, failed

SMALL_COLUMNS = ("depth_small", "flow_small")  # see `enrich.stages.temporal.Summarize`
SUMMARY_COLUMNS = (
    "clip_id",
    "clip_uri",
    "rows_ok",
    "rows_failed",
    "expected",
    "error",
    "source_frames",
    "fps",
    "duration_s",
    "width",
    "height",
)


def _empty(value) -> bool:
    if isinstance(value, (bytes, str)):
        return not value
    return value is None or (isinstance(value, float) and value != value)


class WriteParts(Stage):
    name = "write"
    inputs = tuple(c for c in STAGED.names if c not in (*MODEL_COLUMNS, "run_id", "config_hash")) + (
        "expected",
        "source_frames",
        "fps",
        "duration_s",
        ERROR,
    )
    outputs = SUMMARY_COLUMNS

    def __init__(self, staging: str, constants: dict[str, str | None], drop=()):
        super().__init__(drop)
        self.staging, self.constants = staging, constants

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        by_clip: dict[str, list[int]] = defaultdict(list)
        for i, clip_id in enumerate(batch["clip_id"]):
            by_clip[str(clip_id)].append(i)
        summary: dict[str, list] = {c: [] for c in SUMMARY_COLUMNS}
        for clip_id, rows in by_clip.items():
            good = [i for i in rows if not failed(batch[ERROR][i])]
            errors = [batch[ERROR][i] for i in rows if failed(batch[ERROR][i])]
            if good:
                try:
                    self._write_part(clip_id, batch, good)
                except Exception as exc:  # storage that is gone: the driver stops the run (any other error raises)
                    if not storage.unreachable(exc):
                        raise
                    errors = [storage.UNREACHABLE + storage.describe_s3_error(exc, self.staging)] * len(rows)
                    good = []
            first = rows[0]
            summary["clip_id"].append(clip_id)
            summary["clip_uri"].append(str(batch["clip_uri"][first]))
            summary["rows_ok"].append(len(good))
            summary["rows_failed"].append(len(errors))
            summary["expected"].append(int(min(batch["expected"][i] for i in rows)))
            summary["error"].append(errors[0] if errors else "")
            src = good[0] if good else first
            for c in ("source_frames", "fps", "duration_s", "width", "height"):
                summary[c].append(batch[c][src].item())
        return {
            c: np.array(v, dtype=object if c in ("clip_id", "clip_uri", "error") else None) for c, v in summary.items()
        }

    def _write_part(self, clip_id: str, batch: dict[str, np.ndarray], rows: list[int]) -> None:
        columns = {}
        for name in STAGED.names:
            if name in self.constants:
                columns[name] = [self.constants[name]] * len(rows)
            elif name not in batch:  # a stage that did not run
                columns[name] = [None] * len(rows)
            elif name in JSON_COLUMNS:
                # "" (or None) where not computed: a block whose rows all lack a value would get a
                # column of None, which Ray types as float, and which no longer merges with the others
                columns[name] = [json.loads(v) if isinstance(v := batch[name][i], str) and v else None for i in rows]
            elif name in EMPTY_IS_NULL:  # b"" or NaN
                columns[name] = [None if _empty(batch[name][i]) else batch[name][i] for i in rows]
            elif name in SMALL_COLUMNS:  # float maps, flattened; empty = not computed
                columns[name] = [batch[name][i].ravel() if batch[name][i].size else None for i in rows]
            else:
                columns[name] = [batch[name][i] for i in rows]
        table = pa.table(columns, schema=STAGED)
        buffer = io.BytesIO()
        pq.write_table(table, buffer, row_group_size=1, compression=COMPRESSION)  # the commit reads a frame at a time
        storage.write_bytes(
            storage.join(clip_parts(self.staging, clip_id), f"{uuid.uuid4().hex}.parquet"), buffer.getvalue()
        )
