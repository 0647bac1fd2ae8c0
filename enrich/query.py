"""Querying manifests: SQL over the `frames`, `clips` and `captions` tables, local or s3://, with DuckDB.

Each table is opened at one version of its Delta log (`enrich.manifest.delta.snapshot`): the
latest, or the one `as_of` names, so a query sees one consistent state of the manifest, and the
same state again later. The tables are Arrow datasets of the files that version holds, so DuckDB
pushes column selection and filters into the scan: a query that reads `clip_id` and `flags` never
downloads the depth PNGs. From Python:

    from enrich.query import query
    table = query("s3://bucket/manifests", "SELECT clip_id, count(*) FROM frames GROUP BY 1")
    df = table.to_pandas()
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds

from enrich import storage
from enrich.errors import UsageError
from enrich.manifest import delta
from enrich.manifest.commit import CURRENT_SQL, require_manifest
from enrich.manifest.schema import CLIPS, PER_CLIP

SCHEMAS = {"clips": CLIPS, **PER_CLIP}

FORMATS = ("table", "csv", "json", "parquet")


def tables(output: str, as_of: str | int | None = None) -> tuple[dict[str, object | None], delta.Versions]:
    """The manifest's Delta tables opened at one snapshot (None: not written yet; nothing is read
    but their logs), and its versions."""
    output = storage.normalize(output)
    require_manifest(output)
    with storage.s3_errors(output):
        clips, versions = delta.snapshot(output, as_of)
        out = {"clips": clips}
        for name in PER_CLIP:
            version = versions.others.get(name)
            out[name] = delta.open_table(output, name, version) if version is not None else None
    return out, versions


def query(output: str, sql: str, as_of: str | int | None = None) -> pa.Table:
    """Run `sql` over the tables of the manifest at `output` (`frames`, `clips`, `captions`), at
    their latest version or at `as_of` (a clips-table version, a tag or a time: `enrich.manifest.delta`)."""
    return query_snapshot(output, sql, as_of)[0]


def query_snapshot(output: str, sql: str, as_of: str | int | None = None) -> tuple[pa.Table, delta.Versions]:
    """`query`, and the versions of the snapshot it read."""
    import duckdb

    from enrich.manifest import index

    con, output = duckdb.connect(), storage.normalize(output)
    opened, versions = tables(output, as_of)
    with storage.s3_errors(output):
        for name, table in opened.items():
            schema = SCHEMAS[name]
            if table is None:
                con.register(name, ds.dataset(schema.empty_table()))
            elif name == "frames" and not index.needs_files(sql):  # the small columns: from the index
                index.register_frames(con, output, table, versions.others["frames"])
            elif name == "clips":  # each clip's current row
                con.register("_clips_rows", delta.dataset(output, name, table, schema))
                con.execute(f"CREATE TEMP VIEW clips AS {CURRENT_SQL.format(rows='_clips_rows')}")
            else:
                con.register(name, delta.dataset(output, name, table, schema))
    try:
        return con.sql(sql).to_arrow_table(), versions
    except duckdb.Error as exc:
        raise UsageError(f"query failed: {str(exc).strip().splitlines()[0]}") from None


def write(table: pa.Table, fmt: str, out: str | None, versions: delta.Versions | None = None) -> str | None:
    """`table` as text (fmt table/csv/json to stdout when out is None), or into the file `out`; a
    Parquet file records the snapshot's `versions` in its metadata (`enrich.versions`)."""
    import io

    if fmt == "parquet":
        if not out:
            raise UsageError("--format parquet needs --out FILE")
        import json

        import pyarrow.parquet as pq

        if versions is not None:
            metadata = {**(table.schema.metadata or {}), b"enrich.versions": json.dumps(versions.record()).encode()}
            table = table.replace_schema_metadata(metadata)
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        storage.write_bytes(out, buffer.getvalue())
        return None
    if fmt == "csv":
        import pyarrow.csv as pacsv

        buffer = io.BytesIO()
        pacsv.write_csv(_printable(table), buffer)
        text = buffer.getvalue().decode()
    elif fmt == "json":
        import json

        text = "\n".join(json.dumps(r, default=_json_default) for r in table.to_pylist()) + "\n"
    else:
        text = _pretty(table)
    if out:
        storage.write_bytes(out, text.encode())
        return None
    return text


def _printable(table: pa.Table) -> pa.Table:
    """Binary and nested columns as short text, for CSV and the terminal."""
    import json

    columns = []
    for column in table.columns:
        t = column.type
        if pa.types.is_binary(t) or pa.types.is_large_binary(t):
            column = pa.array([None if v is None else f"<{len(v)} bytes>" for v in column.to_pylist()])
        elif pa.types.is_nested(t):
            column = pa.array([None if v is None else json.dumps(v, default=_json_default) for v in column.to_pylist()])
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _pretty(table: pa.Table, limit: int = 100) -> str:
    shown = _printable(table.slice(0, limit)).to_pylist()
    names = table.column_names
    cells = [[("" if r[n] is None else str(r[n]))[:60] for n in names] for r in shown]
    widths = [max([len(n)] + [len(row[i]) for row in cells]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    more = f" (first {limit} shown)" if table.num_rows > limit else ""
    lines.append(f"({table.num_rows} rows{more})")
    return "\n".join(lines) + "\n"


def _json_default(value):
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)
