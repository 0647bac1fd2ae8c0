"""Which clips a run must process, and why.

The clips table is the state: a clip is skipped only when its last result is `ok` for the same
content (size and etag), the same config and the same model (both inside `config_hash`). A clip
that failed is retried on the next runs until it has failed `retry_limit` times for the same
content and config; then it is left alone (`gave up`) until its content or config changes, or
`--force`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from enrich.catalog import Clip

SHOWN = 50  # clips listed by `lines()`; the rest are counted


@dataclass(frozen=True)
class ClipPlan:
    todo: list[Clip]
    reasons: dict[str, str]  # clip_id -> new | changed | config | failed | forced
    skipped: int  # up to date
    counts: Counter = field(default_factory=Counter)
    attempts: dict[str, int] = field(default_factory=dict)  # clip_id -> which attempt this run makes
    gave_up: list[str] = field(default_factory=list)  # failed retry_limit times; left alone

    def describe(self) -> str:
        parts = [f"{n} {why}" for why, n in sorted(self.counts.items())]
        todo = f"{len(self.todo)} to process" + (f" ({', '.join(parts)})" if parts else "")
        given = f", {len(self.gave_up)} failed too often (left alone; --force retries them)" if self.gave_up else ""
        return f"{todo}, {self.skipped} up to date{given}"

    def lines(self) -> list[str]:
        """The plan, clip by clip, as `enrich run --plan` prints it."""
        out = [f"plan: {self.describe()}"]
        for clip in self.todo[:SHOWN]:
            why = self.reasons[clip.clip_id]
            attempt = self.attempts.get(clip.clip_id, 1)
            out.append(f"  {why:<8} {clip.clip_id}" + (f"  (attempt {attempt})" if why == "failed" else ""))
        if len(self.todo) > SHOWN:
            out.append(f"  ... and {len(self.todo) - SHOWN} more")
        return out


def make_plan(
    clips: list[Clip], previous: pa.Table | None, config_hash: str, force: bool = False, retry_limit: int = 3
) -> ClipPlan:
    state = {}
    if previous is not None:
        columns = ["clip_id", "size_bytes", "etag", "status", "config_hash", "attempts"]
        for row in previous.select(columns).to_pylist():
            state[row["clip_id"]] = row
    todo, reasons, attempts, gave_up = [], {}, {}, []
    for clip in clips:
        last = state.get(clip.clip_id)
        reason = _reason(clip, last, config_hash, force)
        if reason == "failed" and (last["attempts"] or 1) >= retry_limit:
            gave_up.append(clip.clip_id)
        elif reason:
            todo.append(clip)
            reasons[clip.clip_id] = reason
            attempts[clip.clip_id] = (last["attempts"] or 1) + 1 if reason == "failed" else 1
    skipped = len(clips) - len(todo) - len(gave_up)
    return ClipPlan(todo, reasons, skipped, Counter(reasons.values()), attempts, gave_up)


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
