"""Which clips a run must process, why, and which parts of them.

The clips table is the state. A clip's outputs are parts, each with the hash of the settings that
made it (`clips.hashes`, `RunConfig.part_hashes`): `frames` (depth, flow, pose, audits), and each
stage with a table of its own (captions). A clip is skipped only when its last result is `ok` for
the same content (size and etag) and every part's hash is current. When only some of those stage
parts are stale (a new caption prompt; captions added to a catalogue), the clip is redone for those
stages alone (`ClipPlan.only`), and its frames are left as they are.

A part that failed is recorded as `!HASH`. A clip that failed is retried on the next runs until it
has failed `retry_limit` times for the same content and config; then it is left alone (`gave up`)
until its content or config changes, or `--force`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from enrich.catalog import Clip

SHOWN = 50  # clips listed by `lines()`; the rest are counted
FRAMES = "frames"  # the part every clip has
FAILED = "!"  # a part's recorded hash starts with it when the part failed with those settings
COLUMNS = ["clip_id", "size_bytes", "etag", "status", "hashes", "attempts"]  # what a plan reads of the clips table


@dataclass(frozen=True)
class ClipPlan:
    todo: list[Clip]
    reasons: dict[str, str]  # clip_id -> new | changed | config | failed | forced
    skipped: int  # up to date
    counts: Counter = field(default_factory=Counter)
    attempts: dict[str, int] = field(default_factory=dict)  # clip_id -> which attempt this run makes
    gave_up: list[str] = field(default_factory=list)  # failed retry_limit times; left alone
    only: dict[str, tuple[str, ...]] = field(default_factory=dict)  # clip_id -> the stages redone alone
    previous_hashes: dict[str, dict] = field(default_factory=dict)  # clip_id -> its parts' hashes, as recorded

    def describe(self) -> str:
        parts = [f"{n} {why}" for why, n in sorted(self.counts.items())]
        todo = f"{len(self.todo)} to process" + (f" ({', '.join(parts)})" if parts else "")
        alone = Counter(self.only.values())
        todo += "".join(f", {n} for {'+'.join(stages)} only" for stages, n in sorted(alone.items()))
        given = f", {len(self.gave_up)} failed too often (left alone; --force retries them)" if self.gave_up else ""
        return f"{todo}, {self.skipped} up to date{given}"

    def lines(self) -> list[str]:
        """The plan, clip by clip, as `enrich run --plan` prints it."""
        out = [f"plan: {self.describe()}"]
        for clip in self.todo[:SHOWN]:
            why = self.reasons[clip.clip_id]
            attempt = self.attempts.get(clip.clip_id, 1)
            notes = [f"attempt {attempt}"] if why == "failed" else []
            if clip.clip_id in self.only:
                notes.append(f"{'+'.join(self.only[clip.clip_id])} only")
            out.append(f"  {why:<8} {clip.clip_id}" + (f"  ({', '.join(notes)})" if notes else ""))
        if len(self.todo) > SHOWN:
            out.append(f"  ... and {len(self.todo) - SHOWN} more")
        return out

    def renewed(self, clip_id: str) -> bool:
        """Whether the clip is redone from scratch (new, changed or forced), so that any part of it
        this run does not redo is stale."""
        return self.reasons.get(clip_id) in ("new", "changed", "forced")

    def groups(self, stages: tuple[str, ...]) -> list[tuple[tuple[str, ...], bool, list[Clip]]]:
        """The clips to process as (stages, with frames, clips): first the clips redone whole with
        every stage of the run, then those redone for some stages alone, by stage set."""
        out = []
        whole = [c for c in self.todo if c.clip_id not in self.only]
        if whole:
            out.append((stages, True, whole))
        for alone in sorted(set(self.only.values())):
            out.append((alone, False, [c for c in self.todo if self.only.get(c.clip_id) == alone]))
        return out


def make_plan(
    clips: list[Clip], previous: pa.Table | None, hashes: dict[str, str], force: bool = False, retry_limit: int = 3
) -> ClipPlan:
    """`hashes`: each part's current hash (`RunConfig.part_hashes`); `frames` first."""
    state = {}
    if previous is not None:
        for row in previous.select(COLUMNS).to_pylist():
            state[row["clip_id"]] = row
    todo, reasons, attempts, gave_up, only = [], {}, {}, [], {}
    for clip in clips:
        last = state.get(clip.clip_id)
        reason, stale = _reason(clip, last, hashes, force)
        if reason == "failed" and (last["attempts"] or 1) >= retry_limit:
            gave_up.append(clip.clip_id)
        elif reason:
            todo.append(clip)
            reasons[clip.clip_id] = reason
            attempts[clip.clip_id] = (last["attempts"] or 1) + 1 if reason == "failed" else 1
            if stale and FRAMES not in stale:
                only[clip.clip_id] = stale
    skipped = len(clips) - len(todo) - len(gave_up)
    recorded = {c.clip_id: state[c.clip_id]["hashes"] for c in todo if c.clip_id in state}
    return ClipPlan(todo, reasons, skipped, Counter(reasons.values()), attempts, gave_up, only, recorded)


def _reason(clip: Clip, last: dict | None, hashes: dict[str, str], force: bool) -> tuple[str | None, tuple]:
    """Why the clip is processed (None: it is up to date), and its stale parts (empty: all)."""
    if force:
        return "forced", ()
    if last is None:
        return "new", ()
    if last["size_bytes"] != clip.size_bytes or last["etag"] != clip.etag:
        return "changed", ()
    recorded = last["hashes"] or {}  # none: written before parts were hashed
    stale = {part for part, h in hashes.items() if recorded.get(part) not in (h, FAILED + h)}
    failed = {part for part, h in hashes.items() if recorded.get(part) == FAILED + h}
    if stale:
        return "config", _parts(hashes, stale | failed)
    if failed or last["status"] != "ok":
        return "failed", _parts(hashes, failed)
    return None, ()


def _parts(hashes: dict[str, str], parts: set[str]) -> tuple[str, ...]:
    return tuple(p for p in hashes if p in parts)
