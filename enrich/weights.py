"""Where model weights come from, and the identity recorded in every row.

A model spec is one of:
  * a Hugging Face hub id (`depth-anything/Depth-Anything-V2-Small-hf`), pinned to the commit the
    driver resolved, so every node loads the same weights;
  * a local folder in `save_pretrained` layout (it must exist on every node of a cluster);
  * an `s3://` prefix holding such a folder, staged once per node into the local cache;
  * a single weights file (local or `s3://`), for models that are an architecture plus a state dict
    (RAFT): see `resolve_file`;
  * `random:NAME`, a smoke model: the real architecture with seeded random weights, for machines
    that cannot reach the hub. Its id says so in every row; it is never used silently.

The driver resolves and checks a spec before any work (`resolve`); actors call `materialize` to get a
local folder, which downloads at most once per node thanks to a file lock and a completion marker.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Collection
from contextlib import contextmanager
from dataclasses import dataclass

from enrich import storage
from enrich.errors import UsageError

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
RANDOM_SEED = 0


@dataclass(frozen=True)
class ModelRef:
    spec: str  # as the user gave it
    kind: str  # hub | local | s3 | random | file | s3file | torchvision
    location: str  # hub id, local folder, s3 prefix or random name
    revision: str  # hub commit, content hash, or seed

    @property
    def identity(self) -> str:
        """What rows record: enough to know whether a clip must be redone after a model change."""
        return f"{self.spec}@{self.revision}"


def cache_dir() -> str:
    return os.environ.get("ENRICH_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "enrich"))


@contextmanager
def node_lock(name: str):
    """Serialise a download between the actors of one node."""
    os.makedirs(cache_dir(), exist_ok=True)
    with open(os.path.join(cache_dir(), f".{name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def resolve(spec: str, random_names: Collection[str]) -> ModelRef:
    """Check a spec on the driver and pin its revision. Raises UsageError with one line.

    `random_names`: the smoke models the stage can build (`random:NAME`), named without importing
    the model code, which would cost the driver seconds of torch import before anything starts.
    """
    if spec.startswith("random:"):
        name = spec[len("random:") :]
        if name not in random_names:
            raise UsageError(f"unknown smoke model {spec!r} (known: {', '.join('random:' + n for n in random_names)})")
        return ModelRef(spec, "random", name, f"seed{RANDOM_SEED}")
    if storage.is_s3(spec):
        prefix = storage.normalize(spec)
        with storage.s3_errors(prefix):
            objects = sorted(storage.list_objects(prefix), key=lambda o: o.uri)
        names = {storage.relative(o.uri, prefix) for o in objects}
        _check_layout(names, spec)
        digest = hashlib.sha256("".join(f"{o.uri}:{o.etag};" for o in objects).encode()).hexdigest()[:12]
        return ModelRef(spec, "s3", prefix, digest)
    if os.path.exists(spec) or spec.startswith((".", "/", "~")):
        path = storage.normalize(spec)
        if not os.path.isdir(path):
            raise UsageError(f"model folder not found: {spec}")
        _check_layout(set(os.listdir(path)), spec)
        return ModelRef(spec, "local", path, _content_hash(path))
    return _resolve_hub(spec)


def _check_layout(names: set[str], spec: str) -> None:
    if "config.json" not in names:
        raise UsageError(f"model {spec} has no config.json (expected a save_pretrained folder)")
    if not names.intersection(WEIGHT_FILES):
        raise UsageError(f"model {spec} has no weights ({' or '.join(WEIGHT_FILES[::2])})")


def _content_hash(folder: str) -> str:
    digest = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not name.startswith("."):
            digest.update(name.encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return "sha256:" + digest.hexdigest()[:12]


def _resolve_hub(repo_id: str) -> ModelRef:
    from huggingface_hub import snapshot_download

    try:
        path = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt"], etag_timeout=5)
    except Exception as online_error:  # offline, unknown repo, gated: try the local cache before failing
        try:
            path = snapshot_download(repo_id, local_files_only=True)
        except Exception:
            reason = type(online_error).__name__
            raise UsageError(
                f"cannot fetch model {repo_id!r} from the Hugging Face hub ({reason}) "
                "and it is not in the local cache; "
                "pass a local save_pretrained folder or an s3:// prefix, or a smoke model such as "
                "random:depth-anything-v2-small"
            ) from None
    return ModelRef(repo_id, "hub", repo_id, os.path.basename(path))


def resolve_file(spec: str, path: str) -> ModelRef:
    """A single weights file, local or `s3://`, pinned by content hash or ETag."""
    if storage.is_s3(path):
        uri = storage.normalize(path)
        with storage.s3_errors(uri):
            info = storage.stat(uri)
        if info is None:
            raise UsageError(f"weights file not found: {path}")
        return ModelRef(spec, "s3file", uri, info.etag)
    local = storage.normalize(path)
    if not os.path.isfile(local):
        raise UsageError(f"weights file not found: {path}")
    digest = hashlib.sha256()
    with open(local, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return ModelRef(spec, "file", local, "sha256:" + digest.hexdigest()[:12])


def materialize(ref: ModelRef, random_builders: dict[str, Callable[[str], None]]) -> str:
    """A local folder (or file, for single-file kinds) holding the model; fetched or built at most
    once per node."""
    if ref.kind in ("local", "file"):
        return ref.location
    if ref.kind == "hub":
        from huggingface_hub import snapshot_download

        return snapshot_download(
            ref.location, revision=ref.revision, allow_patterns=["*.json", "*.safetensors", "*.txt"]
        )
    key = hashlib.sha256(ref.identity.encode()).hexdigest()[:16]
    folder = os.path.join(cache_dir(), "models", key)
    marker = os.path.join(folder, ".complete")
    with node_lock(key):
        if not os.path.exists(marker):
            os.makedirs(folder, exist_ok=True)
            if ref.kind == "random":
                random_builders[ref.location](folder)
            elif ref.kind == "s3file":
                storage.download(ref.location, os.path.join(folder, ref.location.rsplit("/", 1)[-1]))
            else:
                for uri in storage.list_uris(ref.location):
                    storage.download(uri, os.path.join(folder, storage.relative(uri, ref.location)))
            with open(marker, "w") as f:
                json.dump({"identity": ref.identity}, f)
    if ref.kind == "s3file":
        return os.path.join(folder, ref.location.rsplit("/", 1)[-1])
    return folder
