"""The manifest's tables as Delta Lake tables (`deltalake`, delta-rs): Parquet files, and a
transaction log beside them (`TABLE/_delta_log/`) that says which files make each version.

Readers see a table through its log, never by listing the bucket, so a version is a consistent
snapshot that later runs do not change. On S3, delta-rs commits a version with a conditional PUT
(no lock service), configured here from the same standard AWS settings as boto3.

How the three tables move together: the clips table is the source of truth. Each of its commits
records, in the commit's metadata, the versions of frames and captions that were committed just
before it and hold its clips' rows (`Versions`). A reader opens clips at its latest version (or one
it asks for) and the other tables at the versions that commit names (`snapshot`), so it never
sees frames of a clip whose clips row does not say they are there.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa

from enrich import __version__, storage
from enrich.errors import UsageError
from enrich.manifest import layout

META_KEY = "enrich"  # the commit metadata key under which a clips commit records its Versions
TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,99}")


def storage_options(output: str) -> dict[str, str] | None:
    """delta-rs' object-store options for `output`, from the standard AWS settings (it reads the
    credentials, profile and region from the environment itself; these are what it does not)."""
    if not storage.is_s3(output):
        return None
    options, endpoint, region = {}, storage.endpoint_url(), storage.region()
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if region:
        options["AWS_REGION"] = region
    return options


def is_table(output: str, name: str) -> bool:
    return storage.exists(layout.log_file(output, name, 0))


def open_table(output: str, name: str, version: int | None = None):
    """The table `name` of the manifest at `output` (at `version`; latest when None), or None if
    it has never been written."""
    from deltalake import DeltaTable

    if not is_table(output, name):
        return None
    return DeltaTable(layout.table_dir(output, name), version=version, storage_options=storage_options(output))


def create_table(output: str, name: str, schema: pa.Schema):
    from deltalake import DeltaTable

    uri = layout.table_dir(output, name)
    return DeltaTable.create(uri, schema, mode="ignore", name=name, storage_options=storage_options(output))


def evolve(table, schema: pa.Schema) -> None:
    """Add to the table's schema the columns of `schema` it lacks (a newer enrich's), as nullable:
    a commit keeps the table's schema, so files with new columns would show them to no reader."""
    from deltalake import Schema

    have = {f.name for f in table.schema().fields}
    missing = [f for f in schema if f.name not in have]
    if missing:
        table.alter.add_columns(Schema.from_arrow(pa.schema(missing)).fields)


@dataclass(frozen=True)
class Versions:
    """One consistent snapshot: the version of each table (None: that table has no version yet)."""

    clips: int
    others: dict[str, int | None]  # frames, and each stage's own table

    def record(self) -> dict:
        return {"clips": self.clips, **self.others}


def commit_metadata(others: dict[str, int | None], run_id: str) -> dict[str, str]:
    """The metadata of a clips commit: the other tables' versions that hold its clips' rows."""
    return {META_KEY: json.dumps({"versions": others, "run_id": run_id}, sort_keys=True)}


def snapshot(output: str, as_of: str | int | None = None) -> tuple[object, Versions]:
    """The clips table at `as_of` (a version number, an ISO 8601 time, or None for the latest) and
    the versions of the other tables that go with it."""
    clips = open_table(output, "clips")
    if clips is None:
        raise UsageError(f"{output} is not an enrich manifest (no clips table)")
    if as_of is not None:
        clips.load_as_version(_as_of(as_of, output))
    version = clips.version()
    for v in range(version, -1, -1):  # the last commit enrich made: vacuum commits name no versions
        info = commit_info(output, "clips", v)
        if META_KEY in info:
            return clips, Versions(version, json.loads(info[META_KEY]).get("versions", {}))
    return clips, Versions(version, {})


def commit_info(output: str, name: str, version: int) -> dict:
    """The commitInfo of a table's version, from its commit file (the Delta protocol's
    `_delta_log/N.json`; delta-rs 1.6's `history()` mislabels versions of a table loaded at an
    older one)."""
    for line in storage.read_bytes(layout.log_file(output, name, version)).decode().splitlines():
        action = json.loads(line) if line.strip() else {}
        if "commitInfo" in action:
            return action["commitInfo"]
    return {}


def _as_of(value: str | int, output: str) -> int | datetime:
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    if TAG_NAME.fullmatch(text) and storage.exists(layout.tag_file(output, text)):
        return int(json.loads(storage.read_bytes(layout.tag_file(output, text)))["versions"]["clips"])
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--as-of {text!r}: give a version (0, 1, ...), a tag (enrich tag) or a time (2026-12-01T12:00:00Z)"
        ) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    created = datetime.fromtimestamp(commit_info(output, "clips", 0)["timestamp"] / 1000, UTC)
    if when < created:
        first_time = f"{created:%Y-%m-%dT%H:%M:%SZ}"
        raise UsageError(f"--as-of {text}: the manifest did not exist yet (its first version is from {first_time})")
    return when


def tag(output: str, name: str, as_of: str | int | None = None) -> Versions:
    """Name the snapshot `as_of` (default: the latest) `name`, for good: `--as-of NAME` reads it, and
    `enrich compact` keeps its files."""
    if not TAG_NAME.fullmatch(name) or name.isdigit():
        raise UsageError(f"tag {name!r}: a letter, then letters, digits, '_', '.' or '-' (100 at most)")
    _, versions = snapshot(output, as_of)
    record = {"name": name, "versions": versions.record(), "created": datetime.now(UTC).isoformat(timespec="seconds")}
    if not storage.create_exclusive(layout.tag_file(output, name), json.dumps(record, indent=2).encode()):
        raise UsageError(f"tag {name!r} exists already in {output} (tags are never moved)")
    return versions


def tagged_versions(output: str) -> dict[str, list[int]]:
    """table -> the versions that tags name (which vacuum keeps)."""
    out: dict[str, list[int]] = {}
    for uri in storage.list_uris(layout.tags_dir(output)):
        if uri.endswith(".json"):
            for table, version in json.loads(storage.read_bytes(uri))["versions"].items():
                if version is not None:
                    out.setdefault(table, []).append(int(version))
    return out


def write_file(output: str, name: str, rows: pa.Table, path: str, now: int, data_change: bool = True, scratch=None):
    """Write `rows` (of many clips, sorted by clip_id and frame_index when it has one) as the
    table's file `path`; returns its Add, with the clip_id range that lets commits and readers
    skip it. `scratch`: see `storage.atomic_output`."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

    keys = [(k, "ascending") for k in ("clip_id", "frame_index") if k in rows.column_names]
    rows = rows.sort_by(keys)
    with storage.atomic_output(storage.join(layout.table_dir(output, name), path), scratch) as out:
        pq.write_table(rows, out, compression="snappy", row_group_size=128 * 1024)
        size = out.tell()
    ids = rows["clip_id"]
    stats = {"numRecords": rows.num_rows, "minValues": {"clip_id": pc.min(ids).as_py()},
             "maxValues": {"clip_id": pc.max(ids).as_py()}, "nullCount": {"clip_id": 0}}  # fmt: skip
    return AddAction(path, size, {}, now, data_change, json.dumps(stats))


CHECKPOINT_INTERVAL = 100  # versions between checkpoints, as delta-rs makes them


def own_commits(table) -> bool:
    """Whether enrich may write this table's commits itself (`commit`): the protocol delta-rs
    creates tables with (reader 1, writer 2), not append-only, and no column invariants. A table
    another writer has upgraded is committed through delta-rs instead."""
    protocol = table.protocol()
    if protocol.min_reader_version > 1 or protocol.min_writer_version > 2:
        return False
    if table.metadata().configuration.get("delta.appendOnly", "false").lower() == "true":
        return False
    return not any("delta.invariants" in (f.metadata or {}) for f in table.schema().fields)


def commit(output: str, name: str, version: int, actions: list, metadata: dict[str, str] | None = None) -> int:
    """Commit `actions` (AddAction, RemoveAction) to the table `name`, whose latest version is
    `version`, as the next version, and return it. This is the Delta protocol's commit: the file
    `_delta_log/N.json`, written only if nothing is there (a conditional PUT on S3, a hard link
    locally). delta-rs' own commit goes over every live file of the table, twice with the refresh
    after it (2-3 µs a file: `benchmarks/delta_commit.py`); this costs the actions only. enrich
    commits so only under OUTPUT's lock, so another commit at N means the lock was taken over:
    InfrastructureError, and nothing is written."""
    from enrich.errors import InfrastructureError

    now = now_ms()
    info = {"timestamp": now, "operation": "WRITE", "operationParameters": {"mode": "Append"},
            "clientVersion": f"enrich-{__version__}", **(metadata or {})}  # fmt: skip
    lines = [{"commitInfo": info}, *map(_action, actions)]
    data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
    uri = layout.log_file(output, name, version + 1)
    if not storage.create_exclusive(uri, data) and storage.read_bytes(uri) != data:  # equal: our PUT, retried
        raise InfrastructureError(
            f"{uri}: another writer committed version {version + 1} of the {name} table while this run held "
            "OUTPUT's lock (was the lock taken over?); this run's uncommitted clips are redone by the next run"
        )
    return version + 1


def _action(action) -> dict:
    """An AddAction or RemoveAction as the Delta protocol's JSON action (paths URI-encoded)."""
    from urllib.parse import quote

    from deltalake.transaction import AddAction

    if isinstance(action, AddAction):
        return {"add": {"path": quote(action.path), "partitionValues": dict(action.partition_values),
                        "size": action.size, "modificationTime": action.modification_time,
                        "dataChange": action.data_change, "stats": action.stats}}  # fmt: skip
    remove = {"path": quote(action.path), "dataChange": action.data_change,
              "deletionTimestamp": action.deletion_timestamp, "extendedFileMetadata": False,
              "partitionValues": dict(action.partition_values or {})}  # fmt: skip
    if action.size is not None:
        remove["size"] = action.size
    return {"remove": remove}


def now_ms() -> int:
    """A Delta action's time stamp."""
    return int(time.time() * 1000)


def file_paths(table) -> list[str]:
    """The files of a table's loaded version, relative to the table, from its log."""
    return pa.table(table.get_add_actions(flatten=True))["path"].to_pylist() if table.version() else []


def files_dataset(output: str, name: str, paths: list[str], schema: pa.Schema):
    """Files of the table `name` (`paths` relative to it) as one Arrow dataset with `schema` (the
    manifest's, so files written by an older version read their missing columns as nulls). Nothing
    is read yet; DuckDB and pyarrow push column selection and filters into the scan."""
    import pyarrow.dataset as ds

    fs, root = filesystem(output)
    paths = [f"{root}/{name}/{p}" for p in paths]  # from the log: no file is listed or stat'ed (a HEAD each on S3)
    return ds.FileSystemDataset.from_paths(paths, schema=schema, format=ds.ParquetFileFormat(), filesystem=fs)


def dataset(output: str, name: str, table, schema: pa.Schema):
    """The files of a table's loaded version as one Arrow dataset (`files_dataset`)."""
    return files_dataset(output, name, file_paths(table), schema)


def values_by_file(output: str, name: str, table, schema: pa.Schema, column: str) -> dict[str, list]:
    """Each file of a table's loaded version (relative path) -> its values of `column`, read alone."""
    return {
        path: rows[column].to_pylist() for path, rows in columns_by_file(output, name, table, schema, [column]).items()
    }


def columns_by_file(output: str, name: str, table, schema: pa.Schema, columns: list[str]) -> dict[str, pa.Table]:
    """Each file of a table's loaded version (relative path) -> its rows of `columns`, in file order."""
    prefix = f"{filesystem(output)[1]}/{name}/"
    files = dataset(output, name, table, schema)
    return {  # with the dataset's schema: a file of an older version reads its missing columns as nulls
        fragment.path.removeprefix(prefix): fragment.to_table(columns=columns, schema=files.schema)
        for fragment in files.get_fragments()
    }


def clip_files(output: str, name: str, clip_ids, versions: Versions | None = None) -> dict[str, str]:
    """clip_id -> the URI of its file in the per-clip table `name`, at the snapshot `versions`
    (default: the latest), found in the table's log: no file is opened."""
    if versions is None:
        versions = snapshot(output)[1]
    version = versions.others.get(name)
    table = open_table(output, name, version) if version is not None else None
    if table is None:
        return {}
    wanted = {layout.clip_key(c): c for c in clip_ids}
    base = layout.table_dir(output, name)
    return {wanted[k]: storage.join(base, p) for p in file_paths(table) if (k := layout.key_of(p)) in wanted}


def filesystem(output: str):
    """pyarrow's file system for `output`, and `output` as its path there. On S3, pyarrow's client
    follows the standard AWS chain (environment, profile, role) for credentials."""
    import pyarrow.fs as pafs

    if not storage.is_s3(output):
        return pafs.LocalFileSystem(), output.rstrip("/")
    bucket, key = storage.split_s3(output)
    kwargs, endpoint, region = {}, storage.endpoint_url(), storage.region()
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs = {"endpoint_override": host or scheme, "scheme": scheme if host else "https"}
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs), f"{bucket}/{key}".rstrip("/")
