"""The captioning model: a Qwen3-VL (or Qwen2.5-VL) through transformers, greedy decoding.

A window's frames go in as images of one user turn, after which comes the prompt, through the
checkpoint's own chat template and processor; `generate` decodes greedily, so a window's caption
is a function of its frames, the prompt and the model. Windows are captioned one at a time: padded
batches of a random smoke model can tip a greedy choice on float noise, and the stage's tests
compare against transformers' `generate` exactly.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch

from enrich.ops.common import load_checked, pick_device, torch_dtype
from enrich.stages.caption.actor import check_type


def messages(prompt: str, k: int) -> list[dict]:
    """One user turn: k images, then the prompt."""
    return [{"role": "user", "content": [*({"type": "image"} for _ in range(k)), {"type": "text", "text": prompt}]}]


class Captioner:
    def __init__(self, folder: str, device: str | None = None, precision: str = "fp32", **_ignored):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        check_type(folder)
        self.device = device or pick_device()
        self.dtype = torch_dtype(precision, self.device)
        self.processor = AutoProcessor.from_pretrained(folder)
        self.model = load_checked(AutoModelForImageTextToText, folder, dtype=self.dtype).to(self.device).eval()

    def inputs(self, frames: np.ndarray, prompt: str):
        """A window's frames [k, H, W, 3] and the prompt, as the processor makes them."""
        text = self.processor.apply_chat_template(messages(prompt, len(frames)), add_generation_prompt=True)
        return self.processor(text=[text], images=list(frames), return_tensors="pt").to(self.device)

    @torch.inference_mode()
    def caption(self, windows: list[np.ndarray], prompt: str, max_new_tokens: int) -> list[str]:
        out = []
        for frames in windows:
            inputs = self.inputs(frames, prompt)
            tokens = self.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            new = tokens[0, inputs["input_ids"].shape[1] :]
            out.append(self.processor.decode(new, skip_special_tokens=True).strip())
        return out


# ---- the smoke model: the real Qwen3-VL classes at a tiny size, with a tokenizer built here ----

SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>")
SPECIAL += ("<|image_pad|>", "<|video_pad|>")
# The Qwen chat format for text and images, as the published checkpoints write it.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = (
    "a person walks a dog across the street while the camera pans left and follows them",
    "the robot arm picks up a red cup from the table and places it in the sink",
    "describe the actors, the objects, the actions and the camera motion in these frames",
    "a hand opens the drawer; the camera is static; a car drives past in the background",
)


def build_tokenizer():
    """A small byte-level BPE tokenizer with Qwen's special tokens, trained on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2TokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=list(SPECIAL), initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(list(CORPUS) * 8, trainer)
    fast = Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None)
    fast.add_special_tokens({"additional_special_tokens": list(SPECIAL[1:])})
    return fast


def build_random_qwen3_vl(folder: str, seed: int = 0) -> None:
    """A tiny Qwen3-VL (2 text and 2 vision layers, width 64) with seeded random weights, its
    processor and tokenizer, saved like a published checkpoint."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    patches = dict(patch_size=16, temporal_patch_size=2, merge_size=2)
    images = Qwen2VLImageProcessor(
        **patches, min_pixels=64 * 32 * 32, max_pixels=256 * 32 * 32, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    processor = Qwen3VLProcessor(
        image_processor=images, tokenizer=tokenizer, video_processor=Qwen3VLVideoProcessor(**patches),
        chat_template=CHAT_TEMPLATE,
    )  # fmt: skip
    text = dict(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, initializer_range=0.2,
        rope_scaling={"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True},
    )  # fmt: skip
    vision = dict(
        depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64, patch_size=16,
        spatial_merge_size=2, temporal_patch_size=2, deepstack_visual_indexes=[0, 1], num_position_embeddings=256,
        initializer_range=0.2,
    )  # fmt: skip
    config = Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    with open(os.path.join(folder, "enrich_smoke.json"), "w") as f:
        json.dump({"seed": seed}, f)


RANDOM_BUILDERS = {"qwen3-vl-tiny": build_random_qwen3_vl}
