"""Querying manifests: SQL over the `frames`, `clips` and `captions` tables, local or s3://, with DuckDB.

The tables are Arrow datasets (pyarrow's local or S3 filesystem, the standard AWS settings), so
DuckDB pushes column selection and filters into the scan: a query that reads `clip_id` and
`flags` never downloads the depth PNGs. From Python:

    from enrich.query import query
    table = query("s3://bucket/manifests", "SELECT clip_id, count(*) FROM frames GROUP BY 1")
    df = table.to_pandas()
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from enrich import storage
from enrich.errors import UsageError
from enrich.manifest.commit import require_manifest

FORMATS = ("table", "csv", "json", "parquet")


def datasets(output: str) -> dict[str, ds.Dataset]:
    """The manifest's tables as Arrow datasets (nothing is read yet)."""
    output = storage.normalize(output)
    require_manifest(output)
    fs, root = _filesystem(output)
    from enrich.manifest.schema import CLIPS, FRAMES, TABLES

    out = {}
    for name, schema in {"frames": FRAMES, "clips": CLIPS, **TABLES}.items():
        folder = f"{root}/{name}"
        if fs.get_file_info(folder).type == pafs.FileType.NotFound:  # e.g. captions that never ran
            out[name] = ds.dataset(schema.empty_table())
            continue
        # Files of older manifest versions lack newer columns: the current schema reads them as nulls.
        out[name] = ds.dataset(folder, schema=schema, format="parquet", filesystem=fs,
                               exclude_invalid_files=False, ignore_prefixes=["_", "."])  # fmt: skip
    return out


def query(output: str, sql: str) -> pa.Table:
    """Run `sql` over the tables of the manifest at `output` (`frames`, `clips`, `captions`)."""
    import duckdb

    con = duckdb.connect()
    for name, dataset in datasets(output).items():
        con.register(name, dataset)
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise UsageError(f"query failed: {str(exc).strip().splitlines()[0]}") from None


def write(table: pa.Table, fmt: str, out: str | None) -> str | None:
    """`table` as text (fmt table/csv/json to stdout when out is None), or into the file `out`."""
    import io

    if fmt == "parquet":
        if not out:
            raise UsageError("--format parquet needs --out FILE")
        import pyarrow.parquet as pq

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


def _filesystem(output: str):
    if not storage.is_s3(output):
        return pafs.LocalFileSystem(), output
    import os

    bucket, key = storage.split_s3(output)
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    kwargs = {}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs = {"endpoint_override": host or scheme, "scheme": scheme if host else "https"}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    # Credentials: pyarrow's S3 client follows the standard AWS chain (environment, profile, role).
    return pafs.S3FileSystem(**kwargs), f"{bucket}/{key}".rstrip("/")
