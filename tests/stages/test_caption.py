"""Captions against transformers' own documented VLM usage, on real frames, without Ray.

The smoke model is the real Qwen3-VL classes at a tiny size with seeded random weights and a
tokenizer built here (`enrich.stages.caption.model.build_random_qwen3_vl`); its captions are
gibberish, but they are a function of the frames, which is what is checked.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from enrich.stages.caption import DEFAULT_PROMPT
from enrich.stages.caption.actor import Caption, check_type
from enrich.stages.caption.model import Captioner, build_random_qwen3_vl
from enrich.stages.decode import Decode
from enrich.weights import ModelRef

TOKENS = 16


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    folder = tmp_path_factory.mktemp("qwen3-vl-tiny")
    build_random_qwen3_vl(str(folder))
    return folder


@pytest.fixture(scope="module")
def windows(fixtures_dir):
    """The caption windows decode cuts from two clips: 4 frames each."""
    found = []
    for name in ("sintel_scene_cuts_10s.mp4", "tokyo_walk.mp4"):
        for rows in Decode(fps=1.0, max_frames=None, windows=(5.0, 4)).decode_clip(name, str(fixtures_dir / name)):
            found += [w for w in rows["window_frames"] if w.size]
    return found


def reference(folder, frames: np.ndarray, prompt: str) -> str:
    """The transformers model doc's usage: the chat template with the images in the messages."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    content = [{"type": "image", "image": Image.fromarray(f)} for f in frames] + [{"type": "text", "text": prompt}]
    inputs = processor.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=True, add_generation_prompt=True, return_dict=True,
        return_tensors="pt",
    )  # fmt: skip
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=TOKENS, do_sample=False)
    return processor.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def test_windows_are_decoded_with_their_frames(windows):
    assert len(windows) == 5  # 5 s windows: two of the 10 s Sintel clip, three of the 13 s walk
    assert all(w.shape[0] == 4 and w.shape[-1] == 3 and max(w.shape[1:3]) <= 640 for w in windows)


def test_captions_equal_transformers_generate(vlm, windows):
    captioner = Captioner(str(vlm), device="cpu", precision="fp32")
    got = captioner.caption(windows, DEFAULT_PROMPT, TOKENS)
    want = [reference(vlm, w, DEFAULT_PROMPT) for w in windows]
    assert got == want
    assert len(set(got)) > 1, "the smoke model's captions must depend on the frames"
    other = captioner.caption(windows[:1], "what is the camera doing", TOKENS)
    assert other == [reference(vlm, windows[0], "what is the camera doing")]


def test_caption_stage_captions_window_rows_only(vlm, windows):
    stage = Caption(ModelRef(str(vlm), "local", str(vlm), "h"), prompt=DEFAULT_PROMPT, max_new_tokens=8,
                    precision="fp32", drop=("window_frames",))  # fmt: skip
    empty = np.zeros((0, 0, 0, 3), np.uint8)
    frames = np.empty(4, dtype=object)
    for i, f in enumerate([windows[0], empty, windows[1], np.zeros((2, 5, 7), np.uint8)]):
        frames[i] = f
    batch = {
        "window_frames": frames,
        "window_start_s": np.array([0.0, np.nan, 5.0, 10.0]),
        "window_end_s": np.array([5.0, np.nan, 10.0, 12.0]),
        "error": np.array(["", "", "decode: broken", ""], dtype=object),
    }
    out = stage(batch)
    assert "window_frames" not in out
    assert (out["caption_start_s"][0], out["caption_end_s"][0]) == (0.0, 5.0)
    assert isinstance(out["caption"][0], str) and out["caption"][0]
    assert out["caption"][1] == "" and out["caption"][2] == ""  # no window; already failed
    assert np.isnan(out["caption_start_s"][1:3]).all() and np.isnan(out["caption_end_s"][1:3]).all()
    assert out["error"][2] == "decode: broken" and out["error"][3].startswith("caption: ")  # not RGB: fails alone


def test_only_vlm_checkpoints_are_accepted(vlm, tiny_depth_model):
    assert check_type(str(vlm)) == "qwen3_vl"
    with pytest.raises(ValueError, match="caption model is a 'depth_anything' checkpoint"):
        check_type(str(tiny_depth_model))


def test_windows_stop_where_the_sampled_frames_stop(fixtures_dir):
    """With --max-frames-per-clip, a window covers only the part of the clip that was sampled."""
    rows = next(Decode(fps=None, max_frames=3, windows=(5.0, 4)).decode_clip("s", str(fixtures_dir / "tokyo_walk.mp4")))
    assert rows["window_start_s"][0] == 0.0 and np.isnan(rows["window_start_s"][1:]).all()
    assert rows["window_end_s"][0] == pytest.approx(3 / 15, abs=1e-3)  # the fourth frame's start, at 15 fps
    assert rows["window_frames"][0].shape[0] == 3  # the window's frames: the three sampled ones
