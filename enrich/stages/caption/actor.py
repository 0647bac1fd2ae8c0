"""Caption: a pool of actors, each holding one VLM, captioning every window decode marks.

Decode puts a window's frames (`window_frames`, k frames spread over the window) on the window's
first sampled frame; that row gets the window's caption and span, the others none ("" and NaN).
The writer puts the rows with a caption in the clip's file of the `captions` table.
"""

from __future__ import annotations

import threading

import numpy as np

from enrich.ops.checkpoints import read_config
from enrich.stages.base import ERROR, Stage, lazy_builders, loading, ok_rows, predict_rows, use_threads
from enrich.weights import ModelRef, materialize

RANDOM_MODELS = ("qwen3-vl-tiny",)
MODEL_TYPES = ("qwen3_vl", "qwen2_5_vl")


def _ops():
    """The model code, imported only where a model runs (torch and transformers take seconds)."""
    from enrich.stages.caption import model

    return model


RANDOM_BUILDERS = lazy_builders(RANDOM_MODELS, _ops)


class Caption(Stage):
    name = "caption"
    inputs = ("window_frames", "window_start_s", "window_end_s", ERROR)
    outputs = ("caption", "caption_start_s", "caption_end_s", ERROR)

    def __init__(
        self,
        model: ModelRef,
        prompt: str,
        max_new_tokens: int = 128,
        precision: str = "auto",
        compile: bool = False,
        threads: int | None = None,
        batch_size: int | None = None,
        drop=(),
    ):
        super().__init__(drop)
        use_threads(threads)
        self.prompt, self.max_new_tokens = prompt, max_new_tokens
        with loading(f"caption model {model.spec}"):
            folder = materialize(model, RANDOM_BUILDERS)
            self.captioner = _ops().Captioner(folder, precision=precision)
        # One model, one call at a time: `generate` keeps state on the model, and a copy per calling
        # thread (as flow and pose keep) crashed Ray's worker when the thread ended (a segfault
        # freeing the thread's state, seen with the tokenizer's and torch's objects held in it).
        self._lock = threading.Lock()

    def process(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [i for i in ok_rows(batch) if batch["window_frames"][i].size]
        windows = [batch["window_frames"][i] for i in rows]
        texts, failures = predict_rows(batch, rows, self._caption, windows, None, "caption")
        n = len(batch[ERROR])
        captions = np.array([""] * n, dtype=object)  # "" and NaN: none (`enrich.stages.write`)
        start, end = np.full(n, np.nan), np.full(n, np.nan)
        for i in rows:
            if texts[i] is not None:
                captions[i] = texts[i]
                start[i], end[i] = batch["window_start_s"][i], batch["window_end_s"][i]
        return {**batch, "caption": captions, "caption_start_s": start, "caption_end_s": end, ERROR: failures}

    def _caption(self, windows: list[np.ndarray]) -> list[str]:
        with self._lock:
            return self.captioner.caption(windows, self.prompt, self.max_new_tokens)


def check_type(folder: str) -> str:
    """The checkpoint's model type, if it is a VLM enrich captions with; ValueError otherwise."""
    found = read_config(folder, "caption model").get("model_type")
    if found not in MODEL_TYPES:
        raise ValueError(f"caption model is a {found!r} checkpoint, expected one of {', '.join(MODEL_TYPES)}")
    return found


def check_model(refs: dict[str, ModelRef]) -> None:
    check_type(materialize(refs["model"], RANDOM_BUILDERS))
