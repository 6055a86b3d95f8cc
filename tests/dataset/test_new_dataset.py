"""Adding a dataset is its builder module plus one entry of the dataset table: everything else reads the entry.

The builder below is written to a file and named by the entry as ``"module:function"``, exactly as a module
of the package (``mdistiller/dataset/<name>.py``) would be; no other file is edited. The run that follows
(the engine's dry run: data, pipeline, models, teacher, one training step, one evaluation batch) reads the
image size, the data pipeline, the model zoo and the task from the entry.
"""
import textwrap

import pytest
import torch

from mdistiller.dataset import DATASETS, DatasetSpec, build_datasets, image_size, register_dataset
from mdistiller.dataset.batched import BatchedLoader
from mdistiller.engine.build import teacher_checkpoint_path, zoo_kind
from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.data import pipeline_of
from mdistiller.engine.dry_run import dry_run
from mdistiller.engine.keys import unused_key_notices
from tests.helpers.runutil import random_teacher_ckpt

BUILDER = textwrap.dedent(
    '''
    import torch
    from torchvision import transforms

    from mdistiller.dataset.common import TensorImageDataset, ToFloatTensor


    def build_toy(root, download):
        """40 uint8 12 x 12 images of 4 classes (brightness by class); 32 train, 8 val."""
        generator = torch.Generator().manual_seed(0)
        labels = torch.arange(40) % 4
        images = (torch.rand(40, 3, 12, 12, generator=generator) * 60 + 60 * labels.view(-1, 1, 1, 1)).to(torch.uint8)
        normalize = [ToFloatTensor(), transforms.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))]
        train_tf = transforms.Compose([transforms.RandomCrop(12, padding=1)] + normalize)
        train = TensorImageDataset(images[:32], labels[:32].tolist(), train_tf, return_index=True)
        val = TensorImageDataset(images[32:], labels[32:].tolist(), transforms.Compose(normalize))
        return train, val, 4
    '''
)


@pytest.fixture
def toy_dataset(tmp_path, monkeypatch):
    (tmp_path / "toy_dataset.py").write_text(BUILDER)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = register_dataset(DatasetSpec("toyset", "toy_dataset:build_toy", image_size=12, in_memory=True))
    yield spec
    DATASETS.pop("toyset")


def test_one_entry_and_a_builder_reach_every_layer(toy_dataset, tmp_path):
    teacher = random_teacher_ckpt(tmp_path / "teacher.pth", "resnet8", 4)
    opts = ["DATASET.TYPE", "toyset", "DISTILLER.TYPE", "KD", "DISTILLER.STUDENT", "resnet8",
            "DISTILLER.TEACHER", "resnet8", "SOLVER.BATCH_SIZE", "8", "DATASET.TEST.BATCH_SIZE", "8",
            "EXPERIMENT.DEVICE", "cpu", "LOG.PREFIX", str(tmp_path / "out")]
    with pytest.raises(FileNotFoundError, match="No released resnet8 teacher for dataset 'toyset'"):
        teacher_checkpoint_path(get_cfg(opts=opts))  # the entry names no released teachers
    opts += ["DISTILLER.TEACHER_CKPT", teacher]
    cfg = get_cfg(opts=opts)
    train_set, val_set, num_classes = build_datasets(cfg)
    assert (len(train_set), len(val_set), num_classes) == (32, 8, 4)
    assert image_size(cfg) == (12, 12)
    assert pipeline_of(cfg) == "batched" and zoo_kind("toyset") == "cifar"
    assert any("INPUT_SIZE does not resize" in n for n in unused_key_notices(get_cfg(opts=opts + ["DATASET.INPUT_SIZE", "16"])))

    report = dry_run(cfg)
    assert (report["train_batch"], report["val_batch"]) == (8, 8)
    assert set(report["losses"]) == {"loss_ce", "loss_kd"}
    assert all(torch.isfinite(torch.tensor(v)) for v in report["losses"].values())
    assert not (tmp_path / "out").exists()


def test_the_table_refuses_a_name_twice_and_an_unknown_task(toy_dataset):
    with pytest.raises(KeyError, match="toyset"):
        register_dataset(DatasetSpec("toyset", "toy_dataset:build_toy", image_size=16))
    with pytest.raises(ValueError, match="unknown task 'segmentation'"):
        register_dataset(DatasetSpec("other", "toy_dataset:build_toy", task="segmentation"))
    assert isinstance(BatchedLoader(build_datasets(get_cfg(opts=["DATASET.TYPE", "toyset"]))[0], 4), BatchedLoader)
