"""What a run records: its summary, the clips table's rows, and the files under OUTPUT/runs/RUN_ID/."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from enrich import licences, storage
from enrich.catalog import Clip
from enrich.config import STAGES
from enrich.manifest import layout
from enrich.plan import FAILED
from enrich.tracker import ClipProgress

if TYPE_CHECKING:
    from enrich.pipeline.preflight import Prepared


@dataclass
class RunSummary:
    run_id: str
    output: str
    clips_ok: int = 0
    clips_failed: int = 0
    clips_skipped: int = 0
    frames: int = 0
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    alone: Counter = field(default_factory=Counter)  # "caption" -> clips redone for it alone, ok
    published: int = 0  # clips committed to the manifest's tables
    versions: dict = field(default_factory=dict)  # the table versions of the run's last commit

    def lines(self) -> list[str]:
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"run {self.run_id}: {self.clips_ok} clips ok, {self.clips_failed} failed, "
            f"{self.clips_skipped} up to date; "
            f"{self.frames} frames written in {self.seconds:.1f}s ({rate:.2f} frames/s)",
            f"manifest: {layout.table_dir(self.output, 'frames')} and {layout.table_dir(self.output, 'clips')}"
            + (f" (version {self.versions['clips']})" if self.versions else ""),
        ]
        out += [f"{n} of them redone for {stages} alone (their frames kept)" for stages, n in self.alone.items()]
        out += self.notes
        out += [f"  failed {clip}: {why}" for clip, why in sorted(self.failures.items())[:20]]
        if len(self.failures) > 20:
            out.append(f"  ... and {len(self.failures) - 20} more (query the clips table for status = 'failed')")
        return out


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]


def smoke_notes(specs: dict[str, str]) -> list[str]:
    smoke = [f"{role} {spec}" for role, spec in specs.items() if spec.startswith("random:")]
    if not smoke:
        return []
    return [f"note: SMOKE MODELS (random weights; what they wrote is meaningless): {', '.join(smoke)}"]


def record(summary: RunSummary, clip_id: str, error: str | None, n_frames: int) -> None:
    if error:
        summary.clips_failed += 1
        summary.failures[clip_id] = error
    else:
        summary.clips_ok += 1
        summary.frames += n_frames


def clip_row(
    clip: Clip, progress: ClipProgress | None, prep: Prepared, n_frames: int, error: str | None, figures: dict
) -> dict:
    """The clips-table row of a clip processed whole, with every stage of the run."""
    video = progress.video if progress and not error else {}
    return {
        **figures,
        "clip_id": clip.clip_id,
        "clip_uri": clip.clip_uri,
        "size_bytes": clip.size_bytes,
        "etag": clip.etag,
        "status": "failed" if error else "ok",
        "error": error,
        "attempts": prep.plan.attempts.get(clip.clip_id, 1),
        "n_frames": n_frames,
        **{f"{name}_model": prep.model_ids.get(name) for name in STAGES},
        "run_id": prep.run_id,
        "config_hash": prep.config_hash,
        "hashes": _hashes(prep, clip.clip_id, prep.hashes, error),
        **{k: video.get(k) for k in ("source_frames", "fps", "duration_s", "width", "height")},
    }


def alone_row(last: dict, clip: Clip, prep: Prepared, stages: tuple[str, ...], error: str | None) -> dict:
    """The clips-table row of a clip redone for `stages` alone (`enrich.plan`): its last row, with
    those stages' models and hashes (or the failure) and this run's marks."""
    done = {name: prep.hashes[name] for name in stages}
    hashes = _hashes(prep, clip.clip_id, done, error)
    row = {
        **last,
        "status": "failed" if error else last["status"],
        "error": error or last["error"],
        "attempts": prep.plan.attempts.get(clip.clip_id, 1),
        **{f"{name}_model": prep.model_ids.get(name) for name in stages},
        "run_id": prep.run_id,
        "hashes": hashes,
    }
    current = all(hashes.get(part) == h for part, h in prep.hashes.items())
    return {**row, "config_hash": prep.config_hash if current else last["config_hash"]}


def _hashes(prep: Prepared, clip_id: str, done: dict[str, str], error: str | None) -> dict[str, str]:
    """A clip's part hashes after this run: those it redid (`done`; marked `!` when it failed), and the
    parts it kept, as they were (none when its content changed: what they were made from is gone)."""
    last = {} if prep.plan.renewed(clip_id) else prep.plan.previous_hashes.get(clip_id) or {}
    kept = {part: h for part, h in last.items() if h is not None and part not in done}
    return {**kept, **{part: FAILED + h if error else h for part, h in done.items()}}


def previous_rows(output: str, only: dict[str, tuple[str, ...]]) -> dict[str, dict]:
    """The last clips-table rows of the clips redone for some stages alone (all their columns)."""
    if not only:
        return {}
    from enrich.manifest.commit import read_clips

    rows = read_clips(output, clip_ids=only)
    return {r["clip_id"]: r for r in rows.to_pylist()} if rows is not None else {}


def config_record(prep: Prepared) -> dict:
    return {
        "run_id": prep.run_id,
        "config_hash": prep.config_hash,
        "hashes": prep.hashes,
        "models": prep.model_ids,
        "licences": licences.run_licences(prep.model_specs),
        "plan": prep.plan.describe(),
        "config": prep.cfg.to_flat(),
    }


def summary_record(summary: RunSummary) -> dict:
    return {
        "run_id": summary.run_id,
        "clips_ok": summary.clips_ok,
        "clips_failed": summary.clips_failed,
        "clips_skipped": summary.clips_skipped,
        "frames": summary.frames,
        "seconds": round(summary.seconds, 3),
        "failures": summary.failures,
        "notes": summary.notes,
        # the tables' versions after the run's last commit: `enrich query --as-of VERSION` reads them again
        "versions": summary.versions,
    }


def save_run_file(prep: Prepared, name: str, record: dict) -> None:
    data = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
    storage.write_bytes(layout.run_file(prep.cfg.output, prep.run_id, name), data)
