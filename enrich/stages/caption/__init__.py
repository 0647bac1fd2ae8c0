"""Captions: a vision-language model (Qwen3-VL; Qwen2.5-VL accepted) describes each window of a
clip from a few of its frames, as one stage.

  actor.py   the actor holding the VLM; the window's caption goes on its first sampled frame
  model.py   the model code (torch, transformers): chat template, processor, greedy `generate`

Windows are cut by decode (`enrich.stages.decode`, `windows=`): every `window_s` seconds from the
start of each shot (or of the clip, with `shots` off), with `frames` frames spread over each. This
module declares the stage (`STAGE`).

Captions are a table of their own (OUTPUT/captions/, a row per window), hashed apart from the
frames: a new prompt, window or model redoes the captions and leaves the depth, flow and pose alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from enrich.licences import OWN_LICENCE, KnownModel
from enrich.stages.caption.actor import RANDOM_MODELS, Caption, check_model
from enrich.stages.spec import Column, Flag, ModelStage, StageConfig, check, positive, smoke
from enrich.weights import resolve

__all__ = ["STAGE", "CaptionConfig"]

DEFAULT_MODEL = "Qwen/Qwen3-VL-2B-Instruct"
# What a robotics or world-model team asks of a clip: who and what is there, what happens, and how
# the camera moves (which the depth and flow of a monocular clip depend on).
DEFAULT_PROMPT = (
    "These frames are from one video clip, in order. In two or three sentences, describe: the people, "
    "robots or animals in it and what they do; the objects they handle or that matter to the scene; "
    "and how the camera moves (static, panning, walking forward, handheld)."
)
DEFAULT_BATCH_SIZE = {"cpu": 1, "gpu": 4}  # rows per call; windows are a few of them


@dataclass(frozen=True)
class CaptionConfig(StageConfig):
    model: str = DEFAULT_MODEL  # hub id, local save_pretrained folder, s3:// prefix, or random:qwen3-vl-tiny
    window_s: float = 5.0  # one caption per this many seconds of the clip
    frames: int = 4  # frames the model sees per window, spread evenly over it
    shots: bool = True  # windows follow the clip's shots (decode reads the sampled frames once more to find them)
    prompt: str = DEFAULT_PROMPT
    max_new_tokens: int = 128

    def validate(self, name: str) -> None:
        positive(self.window_s, "--caption-window", float)
        check(self.window_s is not None, "--caption-window must be > 0")
        for key, flag in (("frames", "--caption-frames"), ("max_new_tokens", "--caption-max-new-tokens")):
            check(getattr(self, key) is not None, f"{flag} must be > 0")
            positive(getattr(self, key), flag, int)
        check(isinstance(self.prompt, str) and bool(self.prompt.strip()), "--caption-prompt must not be empty")
        check(not self.compile, "--caption-compile is not supported yet")
        check(isinstance(self.shots, bool), f"caption_shots must be true or false, got {self.shots!r}")

    def output_fields(self) -> dict:
        """As every stage's, but `auto` is hashed as itself: greedy text under bf16 may differ word
        for word from fp32, and no tolerance test says otherwise."""
        return {**super().output_fields(), "precision": self.precision}


_QWEN3 = "Qwen3-VL Instruct"
_FOLDER = "local path forms: a save_pretrained folder, local or s3://"

STAGE = ModelStage(
    name="caption",
    config=CaptionConfig,
    actor=Caption,
    encoder=None,
    resolve=lambda cfg: {"model": resolve(cfg.model, RANDOM_MODELS)},
    check=check_model,
    actor_kwargs=lambda cfg, refs: dict(
        model=refs["model"], prompt=cfg.prompt, max_new_tokens=cfg.max_new_tokens, precision=cfg.precision
    ),
    default_batch=DEFAULT_BATCH_SIZE,
    windows=lambda cfg: (float(cfg.window_s), int(cfg.frames), bool(cfg.shots)),
    table="captions",
    columns=(
        Column("caption_start_s", pa.float64(), "where the window starts, in seconds of the clip", empty_is_null=True),
        Column("caption_end_s", pa.float64(), "where it ends", empty_is_null=True),
        Column("caption", pa.string(), "what the VLM says of the window's frames", empty_is_null=True),
    ),
    models=(
        # Licences from each checkpoint's model card: Qwen3-VL 2B/4B/8B Instruct and Qwen2.5-VL 7B are
        # Apache-2.0; Qwen2.5-VL 3B is under the Qwen Research License (non-commercial).
        KnownModel("caption", DEFAULT_MODEL, "Apache-2.0", f"default; {_QWEN3}"),
        KnownModel("caption", "Qwen/Qwen3-VL-4B-Instruct", "Apache-2.0", _QWEN3),
        KnownModel("caption", "Qwen/Qwen3-VL-8B-Instruct", "Apache-2.0", _QWEN3),
        KnownModel("caption", "Qwen/Qwen2.5-VL-7B-Instruct", "Apache-2.0", "Qwen2.5-VL Instruct"),
        KnownModel("caption", "Qwen/Qwen2.5-VL-3B-Instruct", "Qwen-Research", "Qwen2.5-VL Instruct"),
        *smoke("caption", RANDOM_MODELS),
        KnownModel("caption", "PATH | s3://PREFIX", OWN_LICENCE, _FOLDER),
    ),
    flags=(
        Flag(
            "--caption-model",
            "model",
            "Qwen3-VL or Qwen2.5-VL: a hub id, a local save_pretrained folder or an s3:// prefix; "
            f"random:qwen3-vl-tiny for smoke runs (default: {DEFAULT_MODEL})",
        ),
        Flag("--caption-window", "window_s", "seconds of clip per caption (default: 5)", dict(type=float)),
        Flag(
            "--caption-across-cuts",
            "shots",
            "windows run from the clip's start across scene cuts, saving a second decode of the sampled frames "
            "(default: each shot's windows start with the shot)",
            dict(action="store_false"),
        ),
        Flag("--caption-frames", "frames", "frames the model sees per window (default: 4)", dict(type=int)),
        Flag("--caption-prompt", "prompt", "the instruction (default: actors, objects, actions, camera motion)"),
        Flag("--caption-max-new-tokens", "max_new_tokens", "longest caption, in tokens (default: 128)", dict(type=int)),
    ),
)
