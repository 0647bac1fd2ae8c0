"""Knowing when a clip is finished, from the per-clip counts the write stage reports.

Every row of a clip says how many rows the clip produces in total (`expected`). A clip whose
decoding fails part-way ends with an error row claiming fewer rows than the earlier ones did, so
the smallest claim is the truth. A clip is finished when the rows reported reach that number, in
whatever order its blocks arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from enrich.stages.base import failed


@dataclass
class ClipProgress:
    clip_id: str
    clip_uri: str = ""
    expected: int | None = None
    rows_ok: int = 0
    rows_failed: int = 0
    error: str | None = None
    video: dict = field(default_factory=dict)  # source_frames, fps, duration_s, width, height

    @property
    def done(self) -> bool:
        return self.expected is not None and self.rows_ok + self.rows_failed >= self.expected

    @property
    def ok(self) -> bool:
        return self.error is None and self.rows_failed == 0


VIDEO_FIELDS = ("source_frames", "fps", "duration_s", "width", "height")


class ClipTracker:
    def __init__(self) -> None:
        self.clips: dict[str, ClipProgress] = {}
        self.frames_ok = 0

    def add(self, row: dict) -> ClipProgress | None:
        """Count one summary row; returns the clip when this row finished it."""
        clip = self.clips.setdefault(row["clip_id"], ClipProgress(row["clip_id"]))
        if clip.done:
            return None
        clip.clip_uri = row["clip_uri"]
        clip.expected = row["expected"] if clip.expected is None else min(clip.expected, row["expected"])
        clip.rows_ok += row["rows_ok"]
        clip.rows_failed += row["rows_failed"]
        self.frames_ok += row["rows_ok"]
        if failed(row["error"]) and clip.error is None:
            clip.error = row["error"]
        if row["rows_ok"] and not clip.video:
            clip.video = {k: row[k] for k in VIDEO_FIELDS}
        return clip if clip.done else None

    def unfinished(self, clip_ids: list[str]) -> list[str]:
        return [c for c in clip_ids if c not in self.clips or not self.clips[c].done]
