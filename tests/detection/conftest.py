"""Session fixtures of the detection tests: one generated COCO-format set (real PNG + json files) and teacher
checkpoints, shared by every detection test; configs shrunk to CPU size by :data:`TINY`."""
import pytest
import torch

from mdistiller.dataset.shapes import LAYOUT, write_shapes
from mdistiller.engine.build import build_detector_model
from mdistiller.engine.cfg import get_cfg

IMAGE_SIZE = 96  # P6 of a 96 x 96 image is 2 x 2: the smallest map WKD-F's per-window variance is defined on
# Detector settings and data of the tests: small FPN and box head, few proposals and RoIs, images kept at 96 x 96,
# two images per batch, anchors for shapes of 10-45 % of the side.
TINY = [
    "DETECTION.FPN_CHANNELS", "16", "DETECTION.ROI_BOX_HEAD.FC_DIM", "32",
    "DETECTION.RPN.PRE_NMS_TOPK_TRAIN", "100", "DETECTION.RPN.PRE_NMS_TOPK_TEST", "50",
    "DETECTION.RPN.POST_NMS_TOPK_TRAIN", "32", "DETECTION.RPN.POST_NMS_TOPK_TEST", "16",
    "DETECTION.RPN.BATCH_SIZE_PER_IMAGE", "32", "DETECTION.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
    "DETECTION.ROI_HEADS.DETECTIONS_PER_IMAGE", "10", "DETECTION.INPUT.MIN_SIZE_TRAIN", "[0]",
    "DETECTION.INPUT.MIN_SIZE_TEST", "0", "DETECTION.ANCHOR_SIZES", "[8, 16, 32, 64, 128]",
    "DATASET.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "2", "DATASET.TEST.BATCH_SIZE", "2",
    "EXPERIMENT.DEVICE", "cpu", "LOG.PROGRESS_BAR", "False", "DISTILLER.STUDENT_PRETRAINED", "False",
    "WKD.SPATIAL_GRID", "1",
]
CATEGORY_IDS = [1, 3, 6, 9]  # the generated set's (ids with gaps, as COCO's)


def coco_layout(root):
    """``DATASET.TYPE coco`` overrides reading the generated set under ``root`` (any COCO-format set)."""
    opts = ["DATASET.TYPE", "coco", "DATASET.ROOT", str(root)]
    for key, value in LAYOUT.items():
        opts += ["DATASET.COCO." + key.upper(), value]
    return opts


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory):
    """``DATASET.ROOT`` of a generated shapes set: 4 training and 2 validation images of 96 x 96 (seed 3: every
    category in both splits)."""
    root = tmp_path_factory.mktemp("detection_data")
    write_shapes(str(root / "shapes"), num_train=4, num_val=2, size=IMAGE_SIZE, max_objects=3, seed=3)
    return root


@pytest.fixture(scope="session")
def teachers(shapes_root):
    """Random teacher checkpoints in the project's format (``{"model": state_dict}``) at :data:`TINY` sizes: a
    ResNet18 and a ResNet101 with K + 1 = 5 columns (as trained here) and a ResNet50 with torchvision's 91 COCO
    columns (as its COCO weights)."""
    cfg = get_cfg("shapes/teacher.yaml", TINY)
    paths = {}
    for name, columns in (("ResNet18", None), ("ResNet101", None), ("ResNet50", 91)):
        torch.manual_seed(0)
        model = build_detector_model(cfg, name, CATEGORY_IDS, num_outputs=columns)
        paths[name] = str(shapes_root / "{}.pth".format(name))
        torch.save({"model": model.state_dict()}, paths[name])
    return paths
