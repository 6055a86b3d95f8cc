"""The COCO evaluator against pycocotools and numbers computed by hand, on hand-made ground truth and predictions.

The evaluator is fed detections as a detector returns them (boxes in the resized image, labels = category ids)
with the images' scale factors; it must map them back and score them exactly as ``COCOeval(gt, dt, "bbox")`` does.
"""
import contextlib
import io
import json
import math
import sys
import types

import pytest
import torch

from mdistiller._cli import UsageError
from mdistiller.engine.device import Runtime
from mdistiller.engine.evaluate import COCOEvaluator, require_pycocotools

GROUND_TRUTH = {
    "images": [{"id": 7, "file_name": "a.png", "width": 100, "height": 80},
               {"id": 9, "file_name": "b.png", "width": 100, "height": 80}],
    "categories": [{"id": 1, "name": "circle"}, {"id": 3, "name": "square"}],
    "annotations": [  # areas: 400 and 600 small (< 32²), 1600 medium; no large box
        {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10.0, 10.0, 20.0, 20.0], "area": 400.0, "iscrowd": 0},
        {"id": 2, "image_id": 7, "category_id": 3, "bbox": [50.0, 40.0, 30.0, 20.0], "area": 600.0, "iscrowd": 0},
        {"id": 3, "image_id": 9, "category_id": 1, "bbox": [5.0, 5.0, 40.0, 40.0], "area": 1600.0, "iscrowd": 0},
    ],
}
SCALE = 2.0  # the images were resized by 2 for the detector: its boxes are twice the ground truth's


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory):
    path = tmp_path_factory.mktemp("coco_eval") / "instances.json"
    path.write_text(json.dumps(GROUND_TRUTH))
    loader = types.SimpleNamespace(dataset=types.SimpleNamespace(annotation_file=str(path)))
    return COCOEvaluator("test", loader, Runtime(device=torch.device("cpu")))


def run(evaluator, found):
    """The evaluator's metrics for ``found`` = {image id: [(x, y, w, h in the original image, category, score)]}."""
    batch_images = [torch.zeros(3, 160, 200), torch.zeros(3, 160, 200)]
    targets = [{"image_id": image_id, "scale": torch.full((4,), SCALE)} for image_id in (7, 9)]

    def model(image):
        out = []
        for target in targets:
            rows = found.get(target["image_id"], [])
            boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h, _, _ in rows]).reshape(-1, 4) * SCALE
            out.append({"boxes": boxes, "labels": torch.tensor([r[4] for r in rows], dtype=torch.int64),
                        "scores": torch.tensor([r[5] for r in rows])})
        return out

    return evaluator(model, loader=[(batch_images, targets)])


def pycocotools_stats(evaluator, found):
    COCO, COCOeval = require_pycocotools()
    results = [{"image_id": i, "category_id": c, "bbox": [x, y, w, h], "score": s}
               for i, rows in found.items() for x, y, w, h, c, s in rows]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(evaluator.annotation_file)
        evaluation = COCOeval(gt, gt.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return [100.0 * v if v >= 0 else math.nan for v in evaluation.stats[:6]]


def test_a_perfect_detector_scores_100(evaluator):
    found = {a["image_id"]: [] for a in GROUND_TRUTH["annotations"]}
    for a in GROUND_TRUTH["annotations"]:
        found[a["image_id"]].append(tuple(a["bbox"]) + (a["category_id"], 0.9))
    metrics = run(evaluator, found)
    assert list(metrics) == ["test_ap", "test_ap50", "test_ap75", "test_aps", "test_apm", "test_apl"]
    # 1e-9: COCOeval means precision arrays of ones in float64, which can round to 1 − a few ulp
    assert [metrics[k] for k in ("test_ap", "test_ap50", "test_ap75", "test_aps", "test_apm")] == pytest.approx(
        [100.0] * 5, abs=1e-9)
    assert math.isnan(metrics["test_apl"])  # no large box: COCOeval's -1


def test_a_partial_detector_scores_what_is_computed_by_hand(evaluator):
    # circles: one exact detection (score 0.9) and one false positive (0.8) far from the other circle; squares: the
    # box found shifted right by 3.75 px (score 0.7).
    found = {7: [(10.0, 10.0, 20.0, 20.0, 1, 0.9), (53.75, 40.0, 30.0, 20.0, 3, 0.7)],
             9: [(60.0, 60.0, 10.0, 10.0, 1, 0.8)]}
    metrics = run(evaluator, found)
    # circles: precision 1 up to recall 1/2, never above: 51 of COCO's 101 recall points at every IoU threshold.
    # squares: IoU = 26.25·20 / (2·600 − 26.25·20) = 525 / 675 = 0.777..: found at the 6 thresholds 0.50..0.75.
    circle, square_at = 51 / 101, [1.0 if t <= 0.7778 else 0.0 for t in [0.5 + 0.05 * i for i in range(10)]]
    expected_ap = (circle + sum(square_at) / 10) / 2
    assert metrics["test_ap"] == pytest.approx(100 * expected_ap, abs=1e-9)
    assert metrics["test_ap50"] == pytest.approx(100 * (circle + 1.0) / 2, abs=1e-9)
    assert metrics["test_ap75"] == pytest.approx(100 * (circle + 1.0) / 2, abs=1e-9)
    assert list(metrics.values()) == pytest.approx(pycocotools_stats(evaluator, found), abs=1e-9, nan_ok=True)


def test_missing_pycocotools_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(UsageError, match=r"pip install 'mdistiller\[detection\]'"):
        require_pycocotools()
