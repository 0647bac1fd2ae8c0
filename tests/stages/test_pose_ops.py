"""Pose against transformers' documented ViTPose usage (RT-DETR people -> ViTPose), on real frames."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from enrich.stages.pose.model import PoseEstimator, build_random_rtdetr, build_random_vitpose


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-pose")
    build_random_vitpose(str(root / "vitpose"), "tiny")
    build_random_rtdetr(str(root / "rtdetr"), "tiny")
    return str(root / "vitpose"), str(root / "rtdetr")


@pytest.fixture(scope="module")
def frames(fixtures_dir):
    import decord

    street = decord.VideoReader(str(fixtures_dir / "tokyo_walk.mp4"))
    portrait = decord.VideoReader(str(fixtures_dir / "portrait_with_audio.mp4"))
    coaster = decord.VideoReader(str(fixtures_dir / "davis_rollercoaster.mp4"))
    return {
        "street0": street[0].asnumpy(),  # 1280x720
        "street30": street[30].asnumpy(),
        "portrait": portrait[0].asnumpy(),  # 480x640
        "coaster": coaster[0].asnumpy(),  # 960x540
    }


@pytest.fixture(scope="module")
def reference(models):
    """The ViTPose model doc's steps, one frame at a time, results cached per (frame, threshold)."""
    from transformers import AutoProcessor, RTDetrForObjectDetection, VitPoseForPoseEstimation

    pose_dir, detector_dir = models
    person_processor = AutoProcessor.from_pretrained(detector_dir)
    person_model = RTDetrForObjectDetection.from_pretrained(detector_dir)
    pose_processor = AutoProcessor.from_pretrained(pose_dir)
    pose_model = VitPoseForPoseEstimation.from_pretrained(pose_dir)
    cache = {}

    def run(frame: np.ndarray, threshold: float):
        key = (id(frame), threshold)  # the frames fixture keeps every frame alive
        if key in cache:
            return cache[key]
        image = Image.fromarray(frame)
        inputs = person_processor(images=image, return_tensors="pt")
        with torch.no_grad():
            outputs = person_model(**inputs)
        results = person_processor.post_process_object_detection(
            outputs, target_sizes=torch.tensor([(image.height, image.width)]), threshold=threshold
        )
        result = results[0]
        person_boxes = result["boxes"][result["labels"] == 0].cpu().numpy()
        scores = result["scores"][result["labels"] == 0].cpu().numpy()
        person_boxes[:, 2] = person_boxes[:, 2] - person_boxes[:, 0]
        person_boxes[:, 3] = person_boxes[:, 3] - person_boxes[:, 1]
        poses = []
        if len(person_boxes):
            inputs = pose_processor(image, boxes=[person_boxes], return_tensors="pt")
            with torch.no_grad():
                outputs = pose_model(**inputs)
            poses = pose_processor.post_process_pose_estimation(outputs, boxes=[person_boxes])[0]
        cache[key] = (person_boxes, scores, poses)
        return cache[key]

    return run


# enrich crops on the model's device (`person_crops`), the processor with scipy on the CPU: the
# crops agree but for a rare rounding tie (below), which moves keypoints by a few 1e-4 px.
KEYPOINT_PX = 1e-3
KEYPOINT_SCORE = 1e-4


def assert_matches(people: list[dict], expected) -> None:
    boxes, scores, poses = expected
    assert len(people) == len(boxes) == len(poses)
    for person, box, score, pose in zip(people, boxes, scores, poses, strict=True):
        np.testing.assert_allclose(person["bbox"], box, atol=1e-4, rtol=0)
        np.testing.assert_allclose(person["score"], score, atol=1e-4, rtol=0)
        assert len(person["keypoints"]) == 17
        points = np.array([[p["x"], p["y"]] for p in person["keypoints"]])
        keypoint_scores = np.array([p["score"] for p in person["keypoints"]])
        np.testing.assert_allclose(points, pose["keypoints"].numpy(), atol=KEYPOINT_PX, rtol=0)
        np.testing.assert_allclose(keypoint_scores, pose["scores"].numpy(), atol=KEYPOINT_SCORE, rtol=0)


@pytest.mark.slow  # ~11 s
def test_person_crops_on_the_device_equal_the_processors(models, frames):
    """The crops enrich takes in torch (on the model's device) against the ViTPose processor's scipy
    warp, on detected boxes and on boxes across every edge of the frame."""
    from enrich.stages.pose.model import person_crops

    estimator = PoseEstimator(*models, threshold=0.1)  # many boxes
    level = estimator.pose_processor.rescale_factor / min(estimator.pose_processor.image_std)
    checked = 0
    for frame in frames.values():
        height, width = frame.shape[:2]
        found = np.array([person["bbox"] for person in estimator.predict([frame])[0]], np.float32).reshape(-1, 4)
        edges = [[-30, -20, 200, 300], [width - 100, height - 150, 160, 200], [10.25, 20.5, 33.3, 80.1]]
        edges = np.array([*edges, [0, 0, width, height]], np.float32)
        boxes = np.concatenate([found[:20], edges])
        expected = estimator.pose_processor(frame, boxes=[boxes], return_tensors="pt")["pixel_values"]
        crops = person_crops(torch.from_numpy(frame).permute(2, 0, 1), boxes, estimator.pose_processor)
        assert crops.shape == expected.shape and crops.dtype == torch.float32
        difference = (crops - expected).abs()
        assert difference.max() <= level * 1.001  # at most one uint8 level ...
        assert (difference > 0).float().mean() < 1e-5  # ... on a rare tie (scipy's arithmetic, not ours)
        assert expected.std() > 0.5  # real crops, not padding
        checked += len(boxes)
    assert checked > 30
    pixels = torch.from_numpy(frame).permute(2, 0, 1)
    nobody = person_crops(pixels, np.zeros((0, 4), np.float32), estimator.pose_processor)
    assert nobody.shape == (0, *expected.shape[1:])


def test_single_frames_equal_reference(models, frames, reference):
    estimator = PoseEstimator(*models)
    found = 0
    for name in ("street0", "street30", "coaster"):
        (people,) = estimator.predict([frames[name]])
        assert_matches(people, reference(frames[name], 0.5))
        found += len(people)
        json.dumps(people)  # plain Python floats all the way down
    assert found >= 5, "the tiny detector should find people on street footage at 0.5"


def test_nobody_gives_empty_list(models, frames):
    estimator = PoseEstimator(*models)
    assert estimator.predict([np.zeros((480, 640, 3), np.uint8)]) == [[]]
    estimator.threshold = 1.0
    assert estimator.predict([frames["street0"], frames["portrait"]]) == [[], []]


def test_many_people_in_small_chunks_equal_reference(models, frames, reference):
    estimator = PoseEstimator(*models, threshold=0.25, crops_per_batch=8)
    (people,) = estimator.predict([frames["street0"]])
    assert len(people) >= 50
    assert_matches(people, reference(frames["street0"], 0.25))


def test_mixed_sizes_keep_input_order(models, frames, reference):
    # chunks of 4 crops straddle frames, and the portrait frame has nobody at 0.5
    estimator = PoseEstimator(*models, crops_per_batch=4)
    order = ["street0", "portrait", "coaster", "street30"]
    results = estimator.predict([frames[name] for name in order])
    assert len(results) == len(order)
    for name, people in zip(order, results, strict=True):
        assert_matches(people, reference(frames[name], 0.5))


def test_refuses_a_detector_as_pose_model(models):
    _, detector_dir = models
    with pytest.raises(ValueError, match="expected model_type 'vitpose', got 'rt_detr'") as error:
        PoseEstimator(detector_dir, detector_dir)
    assert "\n" not in str(error.value)


def test_refuses_missing_weights(models, tmp_path):
    from safetensors.torch import load_file, save_file

    pose_dir, detector_dir = models
    broken = tmp_path / "broken-vitpose"
    shutil.copytree(pose_dir, broken)
    weights = load_file(broken / "model.safetensors")
    dropped = sorted(weights)[0]
    del weights[dropped]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=f"1 missing keys, e.g. {dropped}") as error:
        PoseEstimator(str(broken), detector_dir)
    assert "\n" not in str(error.value)


def test_refuses_a_detector_without_people(models, tmp_path):
    pose_dir, detector_dir = models
    broken = tmp_path / "no-person-rtdetr"
    shutil.copytree(detector_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["id2label"]["0"] = "pedestrian"
    config["label2id"] = {name: int(i) for i, name in config["id2label"].items()}
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="no 'person' class") as error:
        PoseEstimator(pose_dir, str(broken))
    assert "\n" not in str(error.value)
    PoseEstimator(*models)  # the originals load


def test_vitpose_plus_runs_the_coco_expert(models, frames, reference, tmp_path):
    """ViTPose-plus has a mixture-of-experts backbone; the docs pick COCO's expert with dataset_index 0."""
    from transformers import AutoProcessor, VitPoseConfig, VitPoseForPoseEstimation

    pose_dir, detector_dir = models
    config = VitPoseConfig.from_pretrained(pose_dir)
    config.backbone_config.num_experts, config.backbone_config.part_features = 2, 8
    torch.manual_seed(0)
    plus = VitPoseForPoseEstimation(config).eval()
    plus.save_pretrained(tmp_path / "plus")
    processor = AutoProcessor.from_pretrained(pose_dir)
    processor.save_pretrained(tmp_path / "plus")

    (people,) = PoseEstimator(str(tmp_path / "plus"), detector_dir, crops_per_batch=4).predict([frames["street30"]])

    boxes, scores, _ = reference(frames["street30"], 0.5)
    inputs = processor(Image.fromarray(frames["street30"]), boxes=[boxes], return_tensors="pt")
    inputs["dataset_index"] = torch.tensor([0])
    with torch.no_grad():
        outputs = plus(**inputs)
    poses = processor.post_process_pose_estimation(outputs, boxes=[boxes])[0]
    assert len(people) > 4  # more than one chunk
    assert_matches(people, (boxes, scores, poses))
