"""COCO-format detection data: the generated set on disk, the reader (class mapping, Detectron2's training filters,
resizing and flips), the detection batch and the errors for missing files."""
import json
import os

import pytest
import torch
from PIL import Image

import mdistiller.dataset.shapes as shapes
from mdistiller.dataset import build_data, build_datasets
from mdistiller.dataset.coco import CocoDetection, ResizeFlip, resized_shape
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.data import batch_inputs, build_loaders
from mdistiller.engine.device import Runtime
from tests.detection.conftest import CATEGORY_IDS, IMAGE_SIZE, TINY, coco_layout


def test_the_generated_set_is_read_back_as_written(shapes_root, tmp_path):
    with open(shapes_root / "shapes" / "annotations" / "instances_train.json") as f:
        data = json.load(f)
    assert sorted(c["id"] for c in data["categories"]) == CATEGORY_IDS
    train, val, num_classes = build_datasets(get_cfg(None, TINY + coco_layout(shapes_root)))
    assert (len(train), len(val), num_classes, train.category_ids) == (4, 2, 4, CATEGORY_IDS)
    image, target = train[0]
    assert image.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and 0.0 <= float(image.min()) <= float(image.max()) <= 1.0
    rows = [a for a in data["annotations"] if a["image_id"] == target["image_id"]]
    xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in rows)])
    flipped = torch.stack([IMAGE_SIZE - xyxy[:, 2], xyxy[:, 1], IMAGE_SIZE - xyxy[:, 0], xyxy[:, 3]], 1)
    assert torch.equal(target["boxes"], xyxy) or torch.equal(target["boxes"], flipped)  # training flips half
    assert target["labels"].tolist() == [CATEGORY_IDS.index(a["category_id"]) + 1 for a in rows]
    # the same arguments write the same files
    shapes.write_shapes(str(tmp_path / "again"), num_train=4, num_val=2, size=IMAGE_SIZE, max_objects=3, seed=3)
    for name in ("annotations/instances_val.json", "val/000001.png"):
        assert (tmp_path / "again" / name).read_bytes() == (shapes_root / "shapes" / name).read_bytes()


def test_shapes_is_written_when_missing(tmp_path, monkeypatch):
    written = []
    real = shapes.write_shapes
    monkeypatch.setattr(shapes, "write_shapes", lambda folder: written.append(folder) or real(folder, 2, 1, 64))
    cfg = get_cfg(None, TINY + ["DATASET.TYPE", "shapes", "DATASET.ROOT", str(tmp_path)])
    assert len(build_datasets(cfg)[0]) == 2 and written == [str(tmp_path / "shapes")]
    build_datasets(cfg)
    assert len(written) == 1  # present: read, not written again


def test_training_drops_crowd_and_empty_boxes_then_empty_images(tmp_path):
    path = tmp_path / "set.json"
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": "x.png", "width": 10, "height": 10} for i in (1, 2, 3)],
        "categories": [{"id": 5, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 5, "bbox": [1, 1, 3, 3], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [1, 1, 3, 3], "iscrowd": 1},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [1, 1, 0, 3], "iscrowd": 0},
        ]}))
    train = CocoDetection(str(tmp_path), str(path), True, ResizeFlip((0,), 0))
    val = CocoDetection(str(tmp_path), str(path), False, ResizeFlip((0,), 0), category_ids=train.category_ids)
    assert train.category_ids == [2, 5] and train.image_ids == [1] and train.labels[0].tolist() == [2]
    assert val.image_ids == [1, 2, 3] and [len(b) for b in val.boxes] == [2, 1, 0]


def test_resizing_and_flipping_move_the_boxes_with_the_pixels():
    assert resized_shape(480, 640, 800, 1333) == (800, 1067)  # short side 800, 640 · 800 / 480 = 1066.67 rounded
    assert resized_shape(400, 1200, 800, 1333) == (444, 1333)  # long side capped
    image = Image.new("RGB", (40, 20))
    image.paste((255, 0, 0), (4, 2, 12, 10))  # a red block at x 4..12, y 2..10
    boxes = torch.tensor([[4.0, 2.0, 12.0, 10.0]]).numpy()
    pixels, moved, scale = ResizeFlip((10,), 100, flip_prob=1.0, train=True)(image, boxes)
    assert pixels.shape == (3, 10, 20) and scale.tolist() == [0.5] * 4
    assert moved.tolist() == [[20 - 6.0, 1.0, 20 - 2.0, 5.0]]
    red = (pixels[0] > 0.5) & (pixels[1] < 0.5)
    ys, xs = red.nonzero(as_tuple=True)
    assert (int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1) == (14, 18, 1, 5)


def test_a_detection_batch_is_lists_of_images_and_targets(shapes_root):
    cfg = get_cfg(None, TINY + coco_layout(shapes_root))
    train, val, _ = build_datasets(cfg)
    train_loader, _ = build_loaders(cfg, train, val, Runtime(device=torch.device("cpu")))
    train_loader.sampler.set_epoch(1)
    batch = next(iter(train_loader))
    inputs = batch_inputs(batch, torch.device("cpu"))
    assert isinstance(inputs["image"], list) and len(inputs["image"]) == 2
    assert set(inputs["target"][0]) == {"boxes", "labels", "image_id", "scale"}


def test_missing_coco_says_where_it_was_expected_and_where_to_get_it(tmp_path):
    cfg = get_cfg(None, TINY + ["DATASET.TYPE", "coco", "DATASET.ROOT", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="cocodataset.org") as error:
        build_datasets(cfg)
    assert os.path.join(str(tmp_path), "coco", "train2017") in str(error.value)


def test_a_validation_split_holds_out_whole_images_stratified_by_their_rarest_class(tmp_path):
    shapes.write_shapes(str(tmp_path / "shapes"), num_train=16, num_val=2, size=IMAGE_SIZE, max_objects=3, seed=4)
    cfg = get_cfg(None, TINY + coco_layout(tmp_path))
    full = build_datasets(cfg)[0]
    counts = torch.bincount(torch.cat([torch.as_tensor(l) for l in full.labels]), minlength=5)
    rarest = [min(l.tolist(), key=lambda c: (int(counts[c]), c)) for l in full.labels]
    assert full.strata == rarest
    data = build_data(get_cfg(None, TINY + coco_layout(tmp_path) + ["DATASET.VAL_SPLIT", "1"]))
    held = data.split.val_indices
    # one image of every stratum, the rest trains; the items are the full set's, with the test transforms
    assert sorted(rarest[i] for i in held) == sorted(set(rarest))
    assert sorted(data.split.train_indices + held) == list(range(len(full)))
    assert data.val.image_ids == [full.image_ids[i] for i in held]
    assert data.train.image_ids == [full.image_ids[i] for i in data.split.train_indices]
    assert data.val.transform is data.test.transform and not data.val.transform.train
    assert data.val.annotation_file == full.annotation_file
    assert data.train.targets == [int(c) - 1 for i in data.split.train_indices for c in full.labels[i]]
    image, target = data.val[0]
    assert torch.equal(target["boxes"], torch.as_tensor(full.boxes[held[0]]))  # not flipped
