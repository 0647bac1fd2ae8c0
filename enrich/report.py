"""`enrich report OUTPUT`: one self-contained HTML page to look at a manifest instead of reading it.

Flag rates over the catalogue and per clip, the flicker figures, and for each flag a few flagged
frames: the stored thumbnail beside its colourised depth. Images are inlined (base64), so the file
can be mailed or opened from a bucket. The manifest is read at one snapshot: the small columns for
the whole catalogue by SQL (`enrich.query`, so from frames_meta where it has them), then the
thumbnails and depth of the example frames alone, from their clips' files.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from PIL import Image

from enrich import storage
from enrich.manifest import delta
from enrich.manifest.layout import report_file
from enrich.manifest.schema import FLAG_NAMES, FRAMES, MODEL_COLUMNS
from enrich.ops.visual import depth_rgb
from enrich.query import query, query_snapshot

EXAMPLES_PER_FLAG = 4
SCORE_OF_FLAG = {  # the score shown under an example, and which examples come first
    "transparent_reflective": ("specular_fraction", True),
    "close_range": ("near_fraction", True),
    "low_texture": ("textureless_fraction", True),
    "motion_blur": ("sharpness", False),
    "exposure": ("luma_mean", None),
    "depth_flicker": ("flicker", True),
    "flow_inconsistent": ("fb_inconsistent_fraction", True),
}
SMALL_COLUMNS = ["clip_id", "frame_index", "timestamp_s", "segment", "flags", "audit"]
IMAGE_COLUMNS = ["clip_id", "frame_index", "thumb_jpeg", "depth_png", "depth_scale", "depth_offset", "depth_kind"]


def build_report(output: str) -> str:
    output = storage.normalize(output)
    clips_sql = "SELECT * FROM clips ORDER BY clip_id"
    clips_table, versions = query_snapshot(output, clips_sql)  # one snapshot for all of the page
    clips = clips_table.to_pylist()
    small = ", ".join(SMALL_COLUMNS)  # small columns only: from frames_meta where it has them
    frames_sql = f"SELECT {small} FROM frames WHERE clip_id IN (SELECT clip_id FROM clips WHERE status = 'ok')"
    frames = query(output, frames_sql, as_of=versions.clips).to_pylist()
    counts = _flag_counts(frames)
    examples = _examples(output, versions, frames)
    return _page(output, clips, frames, counts, examples)


def write_report(output: str, target: str | None = None) -> str:
    page = build_report(output)
    target = target or report_file(output)
    storage.write_bytes(target, page.encode())
    return target


def _flag_counts(frames: list[dict]) -> dict[str, tuple[int, int]]:
    """flag -> (frames flagged, frames where the flag was computed)."""
    counts = {}
    for name in FLAG_NAMES:
        known = [f["flags"][name] for f in frames if f["flags"] and f["flags"][name] is not None]
        counts[name] = (sum(known), len(known))
    return counts


def _examples(output: str, versions, frames: list[dict]) -> dict[str, list[dict]]:
    picked: dict[str, list[dict]] = {}
    for name in FLAG_NAMES:
        score, high_first = SCORE_OF_FLAG[name]
        flagged = [f for f in frames if f["flags"] and f["flags"][name]]
        if high_first is not None:
            flagged.sort(key=lambda f: (f["audit"] or {}).get(score) or 0.0, reverse=high_first)
        # Spread over clips: at most two examples from one clip.
        per_clip: dict[str, int] = defaultdict(int)
        chosen = []
        for f in flagged:
            if per_clip[f["clip_id"]] < 2:
                per_clip[f["clip_id"]] += 1
                chosen.append(f)
            if len(chosen) == EXAMPLES_PER_FLAG:
                break
        picked[name] = chosen
    wanted = defaultdict(set)
    for chosen in picked.values():
        for f in chosen:
            wanted[f["clip_id"]].add(f["frame_index"])
    images = {}
    files = delta.clip_files(output, "frames", wanted, versions)  # found in the log: no listing, no scan
    for clip_id, indices in wanted.items():
        table = pq.read_table(storage.open_input(files[clip_id]), schema=FRAMES, columns=IMAGE_COLUMNS)
        table = table.filter(pc.is_in(table["frame_index"], value_set=pa.array(sorted(indices), pa.int64())))
        for r in table.to_pylist():
            images[(clip_id, r["frame_index"])] = (r["thumb_jpeg"], _depth_thumb(r))
    for chosen in picked.values():
        for f in chosen:
            f["images"] = images.get((f["clip_id"], f["frame_index"]), (None, None))
    return picked


def _depth_thumb(row: dict) -> bytes | None:
    rgb = depth_rgb(row)
    if rgb is None:
        return None
    img = Image.fromarray(rgb)
    img.thumbnail((256, 256), Image.BILINEAR)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _img(data: bytes | None, mime: str) -> str:
    if not data:
        return '<div class="missing">n/a</div>'
    return f'<img src="data:{mime};base64,{base64.b64encode(data).decode()}">'


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _provenance(ok: list[dict]) -> list[str]:
    """Which runs and models made the rows shown, with a banner when any was a smoke model."""
    e = html.escape
    made = defaultdict(int)
    for c in ok:
        made[(c["run_id"], *(c.get(m) for m in MODEL_COLUMNS))] += 1
    out = []
    if any(str(model).startswith("random:") for key in made for model in key[1:] if model):
        out.append(
            "<p style='background:#fdd;border:2px solid #c00;padding:8px;font-weight:bold'>Made with smoke "
            "models (random weights): the depth, flow and pose shown here are meaningless.</p>"
        )
    out.append("<h2>Runs and models</h2><table><tr><th>run</th><th>clips</th><th>models</th></tr>")
    for (run_id, *models), n in sorted(made.items(), key=lambda item: str(item[0][0])):
        names = "<br>".join(
            e(f"{column.split('_')[0]}: {model}") for column, model in zip(MODEL_COLUMNS, models, strict=True) if model
        )
        out.append(f"<tr><td>{e(str(run_id))}</td><td>{n}</td><td style='text-align:left'>{names}</td></tr>")
    out.append("</table>")
    return out


def _page(output, clips, frames, counts, examples) -> str:
    e = html.escape
    ok = [c for c in clips if c["status"] == "ok"]
    failed = [c for c in clips if c["status"] != "ok"]
    before = [c["flicker_before"] for c in ok if c.get("flicker_before") is not None]
    after = [c["flicker_after"] for c in ok if c.get("flicker_after") is not None]
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>enrich report</title><style>",
        "body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
        "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child"
        "{text-align:left}.bar{background:#e66;height:12px}.barbox{width:200px;background:#eee}"
        ".ex{display:inline-block;margin:6px;vertical-align:top;font-size:12px}.ex img{height:120px;margin-right:2px}"
        ".missing{display:inline-block;width:120px;height:120px;background:#eee;text-align:center;line-height:120px}",
        "</style></head><body>",
        f"<h1>enrich report</h1><p>{e(output)} · {len(ok)} clips ok, {len(failed)} failed · {len(frames)} frames"
        f" · generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>",
        *_provenance(ok),
        "<h2>Flag rates over the catalogue</h2><table><tr><th>flag</th><th>frames flagged</th><th>rate</th>"
        "<th></th><th>computed on</th></tr>",
    ]
    for name in FLAG_NAMES:
        flagged, known = counts[name]
        rate = flagged / known if known else None
        width = 0 if rate is None else round(200 * rate)
        out.append(
            f"<tr><td>{name}</td><td>{flagged}</td><td>{_pct(rate)}</td><td><div class='barbox'>"
            f"<div class='bar' style='width:{width}px'></div></div></td><td>{known} frames</td></tr>"
        )
    out.append("</table>")
    out.append(
        f"<h2>Flicker</h2><p>Mean frame-to-frame depth disagreement, as a fraction of the depth range: "
        f"{_num(float(np.mean(before)) if before else None)} raw, "
        f"{_num(float(np.mean(after)) if after else None)} after temporal processing.</p>"
    )
    out.append(
        "<h2>Clips</h2><table><tr><th>clip</th><th>frames</th><th>shots</th><th>flicker raw → after</th>"
        + "".join(f"<th>{n.replace('_', ' ')}</th>" for n in FLAG_NAMES)
        + "</tr>"
    )
    for c in ok:
        rates = c.get("flag_rates") or {}
        out.append(
            f"<tr><td>{e(c['clip_id'])}</td><td>{c['n_frames']}</td><td>{c.get('segments') or '–'}</td>"
            f"<td>{_num(c.get('flicker_before'))} → {_num(c.get('flicker_after'))}</td>"
            + "".join(f"<td>{_pct(rates.get(n))}</td>" for n in FLAG_NAMES)
            + "</tr>"
        )
    out.append("</table>")
    if failed:
        out.append("<h2>Failed clips</h2><table><tr><th>clip</th><th>reason</th></tr>")
        out.extend(f"<tr><td>{e(c['clip_id'])}</td><td>{e(c['error'] or '')}</td></tr>" for c in failed)
        out.append("</table>")
    out.append("<h2>Examples of flagged frames</h2><p>Each: the frame beside its depth (near = bright).</p>")
    for name in FLAG_NAMES:
        chosen = examples[name]
        out.append(f"<h3>{name}</h3>")
        if not chosen:
            out.append("<p>none flagged</p>")
        score = SCORE_OF_FLAG[name][0]
        for f in chosen:
            thumb, depth = f["images"]
            out.append(
                f"<div class='ex'>{_img(thumb, 'image/jpeg')}{_img(depth, 'image/png')}<br>"
                f"{e(f['clip_id'])} · frame {f['frame_index']} · {score} {_num((f['audit'] or {}).get(score))}</div>"
            )
    out.append("</body></html>")
    return "\n".join(out)
