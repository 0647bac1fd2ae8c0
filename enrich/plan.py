"""Which clips a run must process, and why.

The clips table is the state: a clip is skipped only when its last result is `ok` for the same
content (size and etag), the same config and the same model (both inside `config_hash`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from enrich.catalog import Clip


@dataclass(frozen=True)
class Plan:
    todo: list[Clip]
    reasons: dict[str, str]  # clip_id -> new | changed | config | failed | forced
    skipped: int
    counts: Counter = field(default_factory=Counter)

    def describe(self) -> str:
        parts = [f"{n} {why}" for why, n in sorted(self.counts.items())]
        todo = f"{len(self.todo)} to process" + (f" ({', '.join(parts)})" if parts else "")
        return f"{todo}, {self.skipped} up to date"


def make_plan(clips: list[Clip], previous: pa.Table | None, config_hash: str, force: bool = False) -> Plan:
    state = {}
    if previous is not None:
        for row in previous.select(["clip_id", "size_bytes", "etag", "status", "config_hash"]).to_pylist():
            state[row["clip_id"]] = row
    todo, reasons = [], {}
    for clip in clips:
        reason = _reason(clip, state.get(clip.clip_id), config_hash, force)
        if reason:
            todo.append(clip)
            reasons[clip.clip_id] = reason
    return Plan(todo, reasons, len(clips) - len(todo), Counter(reasons.values()))


def _reason(clip: Clip, last: dict | None, config_hash: str, force: bool) -> str | None:
    if force:
        return "forced"
    if last is None:
        return "new"
    if last["size_bytes"] != clip.size_bytes or last["etag"] != clip.etag:
        return "changed"
    if last["config_hash"] != config_hash:
        return "config"
    if last["status"] != "ok":
        return "failed"
    return None
