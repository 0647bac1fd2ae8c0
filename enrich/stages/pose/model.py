"""Top-down human pose: RT-DETR finds people, ViTPose puts 17 COCO keypoints on each, through transformers.

This is the usage the ViTPose model doc prescribes: detect, keep the "person" boxes, turn them from
(x0, y0, x1, y1) into COCO (x, y, w, h), crop with the ViTPose image processor, run the pose model and
map the heatmaps back with `post_process_pose_estimation`. Batching changes only how much runs at once:
the detector sees frames of the same size together, and the person crops of a whole call go through
ViTPose in fixed-size chunks, so a crowded frame cannot blow up memory.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from enrich.ops.checkpoints import detector_person, expect_model_type, person_label
from enrich.ops.common import (
    compile_model,
    load_checked,
    map_same_size,
    pad_batch,
    pick_device,
    torch_dtype,
    torch_processor,
)

COCO_KEYPOINTS = [
    "Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow",
    "L_Wrist", "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle",
]  # fmt: skip

COCO_LABELS = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
]  # fmt: skip

COCO_DATASET_INDEX = 0  # ViTPose-plus MoE experts: COCO is the first training set

# ViTPose backbones: the published ViTPose-B simple, and a tiny one with the same classes.
_VITPOSE_SIZES = {
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4),
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2),
}

# Random class heads put the person logit far below the top-k of the other 79 classes, so a random
# detector never reports anybody. Per size, (scale of the person weight row, person bias), found for
# seed 0 so that on street footage the default threshold 0.5 keeps a handful of people, 0.1 keeps
# 100-200, and an all-black frame none.
_PERSON_LOGIT = {"tiny": (8.0, -5.0), "r50": (-8.0, -4.5)}


def person_crops(frame: torch.Tensor, boxes: np.ndarray, processor) -> torch.Tensor:
    """ViTPose's input for each COCO box of one frame (uint8 [3, H, W] on any device), computed on
    the frame's device: what `processor` (transformers' `VitPoseImageProcessor`) makes of it, which
    warps each crop on the CPU with scipy. The warp matrices are the processor's own functions';
    the resampling is bilinear in float64 (as scipy's), zero outside the frame, rounded to uint8
    levels as scipy writes them, then rescaled and normalised by the processor itself: the
    processor's crops but for a rounding tie in about a million values, one uint8 level
    (tests/stages/test_pose_ops.py). Float32 [len(boxes), 3, h, w]."""
    from transformers.models.vitpose.image_processing_vitpose import box_to_center_and_scale, get_warp_matrix

    height, width = processor.size["height"], processor.size["width"]
    if len(boxes) == 0:
        return torch.zeros((0, 3, height, width), device=frame.device)
    inverse = []
    for box in boxes:
        center, scale = box_to_center_and_scale(
            box, image_width=width, image_height=height, normalize_factor=processor.normalize_factor
        )
        matrix = get_warp_matrix(0, center * 2.0, np.array((width, height)) - 1.0, scale * 200.0)
        inverse.append(np.linalg.inv(np.vstack([matrix, [0, 0, 1]])))  # crop pixel -> frame pixel
    device = frame.device
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    targets = torch.stack([cols, rows, torch.ones_like(rows)], dim=-1).reshape(-1, 3).to(device, torch.float64)
    source = targets @ torch.from_numpy(np.stack(inverse)).to(device).transpose(1, 2)  # [B, h*w, 3]: x, y, 1
    x, y = source[..., 0], source[..., 1]
    frame_h, frame_w = frame.shape[-2:]
    inside = ((x >= 0) & (x <= frame_w - 1) & (y >= 0) & (y <= frame_h - 1)).reshape(-1, 1, height, width)
    # Every crop in one grid over the one frame, [1, B*h, w, 2]: the frame is never copied per box.
    grid = torch.stack([2 * x / (frame_w - 1) - 1, 2 * y / (frame_h - 1) - 1], dim=-1).reshape(1, -1, width, 2)
    sampled = torch.nn.functional.grid_sample(frame.double()[None], grid, mode="bilinear", align_corners=True)
    crops = sampled[0].reshape(3, len(boxes), height, width).transpose(0, 1)
    crops = torch.floor(crops * inside + 0.5).clamp(0, 255).to(torch.uint8)  # scipy rounds halves up
    return processor.rescale_and_normalize(
        crops, processor.do_rescale, processor.rescale_factor, processor.do_normalize, processor.image_mean,
        processor.image_std,
    )  # fmt: skip


def vitpose_processor():
    """The preprocessing the published ViTPose checkpoints ship: 256x192 box crops, ImageNet mean/std."""
    from transformers import VitPoseImageProcessor

    return VitPoseImageProcessor(
        do_affine_transform=True,
        size={"height": 256, "width": 192},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        normalize_factor=200.0,
    )


def rtdetr_processor():
    """The preprocessing the published RT-DETR checkpoints ship: 640x640 bilinear, [0, 1], no normalising."""
    from transformers import RTDetrImageProcessor

    return RTDetrImageProcessor(
        do_resize=True,
        size={"height": 640, "width": 640},
        resample=2,  # bilinear
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=False,
        do_pad=False,
    )


def build_random_vitpose(folder: str, size: str = "tiny", seed: int = 0) -> None:
    """Save a random-weight ViTPose (simple decoder, 17 COCO keypoints) with the real image processor."""
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

    arch = _VITPOSE_SIZES[size]
    backbone = VitPoseBackboneConfig(
        **arch, image_size=[256, 192], patch_size=[16, 16], out_indices=[arch["num_hidden_layers"]]
    )
    config = VitPoseConfig(
        backbone_config=backbone,
        use_simple_decoder=True,
        scale_factor=4,
        id2label=dict(enumerate(COCO_KEYPOINTS)),
    )
    torch.manual_seed(seed)
    VitPoseForPoseEstimation(config).save_pretrained(folder)
    vitpose_processor().save_pretrained(folder)


def build_random_rtdetr(folder: str, size: str = "tiny", seed: int = 0) -> None:
    """Save a random-weight RT-DETR with the 80 COCO labels and the real image processor.

    "r50" is the published R50vd architecture (transformers' default config); "tiny" is the same classes
    with one basic block per ResNet stage (16-128 channels) and a 32-wide encoder and 2-layer decoder.
    The person logit is rescaled (see `_PERSON_LOGIT`) so that the random detector finds people at all.
    """
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig

    scale, bias = _PERSON_LOGIT[size]
    labels = dict(id2label=dict(enumerate(COCO_LABELS)))
    if size == "r50":
        config = RTDetrConfig(**labels)
    else:
        backbone = RTDetrResNetConfig(
            embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], layer_type="basic",
            out_indices=[2, 3, 4],
        )  # fmt: skip
        config = RTDetrConfig(
            backbone_config=backbone, encoder_in_channels=[32, 64, 128], encoder_hidden_dim=32,
            encoder_ffn_dim=64, encoder_attention_heads=2, d_model=32, decoder_in_channels=[32, 32, 32],
            decoder_ffn_dim=64, decoder_layers=2, decoder_attention_heads=2, **labels,
        )  # fmt: skip
    torch.manual_seed(seed)
    model = RTDetrForObjectDetection(config)
    person = person_label(config.id2label)
    with torch.no_grad():
        for head in model.model.decoder.class_embed:
            head.weight[person] *= scale
            head.bias[person] = bias
    model.save_pretrained(folder)
    rtdetr_processor().save_pretrained(folder)


RANDOM_BUILDERS = {
    "vitpose-tiny": lambda folder: build_random_vitpose(folder, "tiny"),
    "vitpose-base": lambda folder: build_random_vitpose(folder, "base"),
    "rtdetr-tiny": lambda folder: build_random_rtdetr(folder, "tiny"),
    "rtdetr-r50": lambda folder: build_random_rtdetr(folder, "r50"),
}


def _load(model_class, folder: str, role: str, **kwargs):
    try:
        return load_checked(model_class, folder, **kwargs)
    except ValueError as error:
        raise ValueError(f"{role} {folder}: {error}") from None


class PoseEstimator:
    """Loaded detector + pose model: `predict(frames)` returns the people of each frame with keypoints."""

    def __init__(
        self,
        pose_folder: str,
        detector_folder: str,
        threshold: float = 0.5,
        device: str | None = None,
        precision: str = "fp32",
        crops_per_batch: int = 32,
        compile: bool = False,
    ):
        """`compile`: ViTPose through `torch.compile` (`enrich.ops.common.compile_model`); RT-DETR's
        post-processing picks a data-dependent number of boxes, so the detector stays as it is."""
        from transformers import AutoConfig, AutoImageProcessor, RTDetrForObjectDetection, VitPoseForPoseEstimation

        expect_model_type(pose_folder, "vitpose", "pose model")
        self.person = detector_person(detector_folder)
        pose_config = AutoConfig.from_pretrained(pose_folder)
        self.threshold = threshold
        self.crops_per_batch = crops_per_batch
        self.moe = pose_config.backbone_config.num_experts > 1
        self.device = device or pick_device()
        self.dtype = torch_dtype(precision, self.device)  # ViTPose's
        # RT-DETR stays fp32 (TF32 matmuls on CUDA unless fp32 was asked for): with bf16 weights its
        # outputs turn NaN (out of a LayerNorm), and under bf16 autocast its person scores moved by
        # up to 0.79 (measured on CPU).
        if self.device.startswith("cuda"):
            torch.set_float32_matmul_precision("highest" if precision == "fp32" else "high")
        self.detector_processor = torch_processor(AutoImageProcessor, detector_folder)  # torch backends:
        self.pose_processor = torch_processor(AutoImageProcessor, pose_folder)  # tensors on the device
        self.detector = _load(RTDetrForObjectDetection, detector_folder, "person detector", dtype=torch.float32)
        self.detector.to(self.device).eval()
        self.pose_model = _load(VitPoseForPoseEstimation, pose_folder, "pose model", dtype=self.dtype)
        self.pose_model.to(self.device).eval()
        self.compiled = compile
        self.pose_forward = compile_model(self.pose_model) if compile else self.pose_model

    @torch.inference_mode()
    def predict(self, frames: list[np.ndarray]) -> list[list[dict]]:
        """RGB uint8 [H, W, 3] frames -> per frame, in input order, its people in original-frame pixels."""
        detections = self._detect(frames)
        poses = self._keypoints(frames, [boxes for boxes, _ in detections])
        return [
            [_person(*person) for person in zip(boxes, scores, frame_poses, strict=True)]
            for (boxes, scores), frame_poses in zip(detections, poses, strict=True)
        ]

    def _detect(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per frame, the person boxes as float32 COCO (x, y, w, h) and their scores."""
        return map_same_size(frames, lambda frame: frame.shape, self._detect_same_size)

    def _on_device(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [N, H, W, 3] frames -> uint8 [N, 3, H, W] on the model's device (from pinned memory)."""
        pixels = torch.from_numpy(frames).permute(0, 3, 1, 2)
        return pixels.pin_memory().to(self.device, non_blocking=True) if self.device != "cpu" else pixels

    def _detect_same_size(self, frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        pixels = self._on_device(np.stack(frames))  # resized and normalised there, by the torchvision backend
        inputs = self.detector_processor(images=pixels, return_tensors="pt", device=self.device)
        outputs = self.detector(pixel_values=inputs["pixel_values"].to(self.device, torch.float32))
        outputs.logits, outputs.pred_boxes = outputs.logits.float(), outputs.pred_boxes.float()
        found = self.detector_processor.post_process_object_detection(
            outputs, target_sizes=[frames[0].shape[:2]] * len(frames), threshold=self.threshold
        )
        people = [result["labels"] == self.person for result in found]
        return [
            (_xyxy_to_xywh(result["boxes"][keep].cpu().numpy()), result["scores"][keep].cpu().numpy())
            for result, keep in zip(found, people, strict=True)
        ]

    def _keypoints(self, frames: list[np.ndarray], boxes: list[np.ndarray]) -> list[list[tuple]]:
        """Per frame, per box, (keypoints [K, 2], scores [K]), running every crop of the call in chunks."""
        crops = [(i, j) for i, frame_boxes in enumerate(boxes) for j in range(len(frame_boxes))]
        results: list[list[tuple]] = [[] for _ in frames]
        for start in range(0, len(crops), self.crops_per_batch):
            chunk = crops[start : start + self.crops_per_batch]
            in_chunk: dict[int, list[int]] = defaultdict(list)  # frame -> its boxes here, in order
            for i, j in chunk:
                in_chunk[i].append(j)
            chunk_frames = [frames[i] for i in in_chunk]
            chunk_boxes = [boxes[i][rows] for i, rows in in_chunk.items()]
            poses = self._estimate(chunk_frames, chunk_boxes)
            for i, frame_poses in zip(in_chunk, poses, strict=True):
                results[i].extend(
                    (pose["keypoints"].cpu().numpy(), pose["scores"].cpu().numpy()) for pose in frame_poses
                )
        return results

    def _estimate(self, frames: list[np.ndarray], boxes: list[np.ndarray]) -> list[list[dict]]:
        pairs = zip(frames, boxes, strict=True)
        crops = [person_crops(self._on_device(frame[None])[0], found, self.pose_processor) for frame, found in pairs]
        n, (pixel_values,) = pad_batch(self.compiled, torch.cat(crops).to(self.dtype), cap=self.crops_per_batch)
        extra = {}
        if self.moe:
            extra["dataset_index"] = torch.full((len(pixel_values),), COCO_DATASET_INDEX, device=self.device)
        outputs = self.pose_forward(pixel_values=pixel_values, **extra)
        outputs.heatmaps = outputs.heatmaps[:n].float()
        return self.pose_processor.post_process_pose_estimation(outputs, boxes=boxes)


def _xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    boxes = boxes.astype(np.float32, copy=True)
    boxes[:, 2:] -= boxes[:, :2]
    return boxes


def _person(box: np.ndarray, score: float, pose: tuple[np.ndarray, np.ndarray]) -> dict:
    points, point_scores = pose
    return {
        "bbox": [float(v) for v in box],
        "score": float(score),
        "keypoints": [
            {"x": float(x), "y": float(y), "score": float(s)}
            for (x, y), s in zip(points, np.ravel(point_scores), strict=True)
        ],
    }
