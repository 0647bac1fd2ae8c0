"""`enrich status OUTPUT`: what a manifest holds, in a few lines, from SQL over its tables."""

from __future__ import annotations

import json
import re

from enrich import storage
from enrich.manifest.layout import runs_dir
from enrich.manifest.schema import FLAG_NAMES
from enrich.query import query


def last_run(output: str) -> dict | None:
    """The newest run's saved config (runs/RUN_ID/config.json; run ids sort by time)."""
    configs = sorted(u for u in storage.list_uris(runs_dir(output)) if u.endswith("/config.json"))
    return json.loads(storage.read_bytes(configs[-1])) if configs else None


def _stale(run: dict | None) -> str:
    """SQL: the clip was made with other settings than the last run's, for a part that run made
    (`clips.hashes`; a part that failed with them is not stale but failed)."""
    hashes = (run or {}).get("hashes") or {"": str((run or {}).get("config_hash", ""))}
    if not all(re.fullmatch(r"[0-9a-f]*", h) and re.fullmatch(r"[a-z_]*", p) for p, h in hashes.items()):
        return "true"  # they go into SQL: only ever hex digests and part names
    if "" in hashes:  # a run from before parts were hashed
        return f"config_hash <> '{hashes['']}'"
    return " OR ".join(f"coalesce(hashes.{p}, '') NOT IN ('{h}', '!{h}')" for p, h in hashes.items())


def status_lines(output: str) -> list[str]:
    output = storage.normalize(output)
    run = None
    with storage.s3_errors(output):
        run = last_run(output)
    current = str(run.get("config_hash", "")) if run else ""
    clips = query(
        output,
        f"""SELECT count(*) AS clips, count(*) FILTER (status = 'ok') AS ok, count(*) FILTER (status <> 'ok') AS failed,
                  count(*) FILTER ({_stale(run)}) AS stale, coalesce(sum(n_frames), 0) AS frames
           FROM clips""",
    ).to_pylist()[0]
    rates = ", ".join(f"avg(CAST(flags.{n} AS DOUBLE)) AS {n}" for n in FLAG_NAMES)
    flags = query(output, f"SELECT {rates} FROM frames").to_pylist()[0]
    lines = [
        f"{output}: {clips['clips']} clips ({clips['ok']} ok, {clips['failed']} failed), {clips['frames']} frames",
    ]
    if run:
        lines.append(
            f"last run {run['run_id']} (config {current}); {clips['stale']} clips were made with another config "
            "or model and are redone by the next run with the last run's options"
        )
        models = run.get("models") or {}
        lines.append("models of the last run: " + "; ".join(f"{stage} {model}" for stage, model in models.items()))
        if any(str(model).startswith("random:") for model in models.values()):
            lines.append("SMOKE MODELS: the last run used random weights; what it wrote is meaningless")
    lines.append("flag rates over frames:")
    for name in FLAG_NAMES:
        rate = flags[name]
        lines.append(f"  {name:<24} {'not computed' if rate is None else f'{100 * rate:.1f}%'}")
    return lines
