"""Listing the clips under INPUT.

Every file with a video extension under INPUT is a clip; a single file given as INPUT is a clip
whatever its name. The clip id is the path relative to INPUT, '/'-separated: stable across runs
and machines, so it keys the manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from enrich import storage

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .wmv .flv .3gp .ogv .mxf .hevc .h264".split()
)


@dataclass(frozen=True)
class Clip:
    clip_id: str
    clip_uri: str
    size_bytes: int
    etag: str


def is_video_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def list_clips(input_uri: str) -> list[Clip]:
    """All clips under `input_uri`, sorted by id. Only metadata: nothing is downloaded."""
    base = storage.normalize(input_uri)
    objects = list(storage.list_objects(base))
    if len(objects) == 1 and objects[0].uri == base:  # INPUT named one file
        only = objects[0]
        return [Clip(os.path.basename(base.rstrip("/")), only.uri, only.size, only.etag)]
    clips = [Clip(storage.relative(o.uri, base), o.uri, o.size, o.etag) for o in objects if is_video_name(o.uri)]
    return sorted(clips, key=lambda c: c.clip_id)
