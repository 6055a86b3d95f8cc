"""No silent keys: a run-level key set to a value this run ignores produces a start-up warning naming it."""
import pytest

from mdistiller.engine.cfg import get_cfg
from mdistiller.engine.keys import UnusedKeyWarning, unused_key_notices, warn_unused_keys


def _notices(*opts):
    return "\n".join(unused_key_notices(get_cfg(None, list(opts))))


def test_defaults_need_no_warning():
    assert unused_key_notices(get_cfg(None)) == []
    assert unused_key_notices(get_cfg(None, ["SOLVER.TRAINER", "dot", "SOLVER.DOT.DELTA", "0.09"])) == []


@pytest.mark.parametrize("opts, key", [
    (["LOG.TENSORBOARD_FREQ", "50"], "LOG.TENSORBOARD_FREQ 50 is not supported: .*one record per epoch"),
    (["DATASET.TYPE", "digits", "DATASET.NUM_WORKERS", "8"], "DATASET.NUM_WORKERS 8 is not used by the batched"),
    (["SOLVER.DOT.DELTA", "0.09"], "SOLVER.DOT.DELTA is used only with SOLVER.TRAINER dot"),
    (["SOLVER.LR_MIN", "0.001"], "SOLVER.LR_MIN is used only with SOLVER.LR_SCHEDULER cosine"),
    (["SOLVER.LR_SCHEDULER", "cosine", "SOLVER.LR_DECAY_RATE", "0.2"], "SOLVER.LR_DECAY_RATE is used only with"),
    (["LOG.DIAGNOSTICS", "False", "LOG.DIAGNOSTICS_SAMPLES", "64"], "LOG.DIAGNOSTICS_SAMPLES is used only"),
    (["DISTILLER.TYPE", "NONE", "DISTILLER.TEACHER_CKPT", "t.pth"], "DISTILLER.TEACHER_CKPT is not used: NONE"),
    (["DATASET.INPUT_SIZE", "32"], "DATASET.INPUT_SIZE does not resize the images"),
])
def test_ignored_keys_are_named(opts, key):
    assert __import__("re").search(key, _notices(*opts)), _notices(*opts)


def test_used_keys_are_not_warned_about():
    assert _notices("DATASET.TYPE", "digits", "DATASET.PIPELINE", "per_sample", "DATASET.NUM_WORKERS", "8") == ""
    assert _notices("SOLVER.LR_SCHEDULER", "cosine", "SOLVER.LR_MIN", "0.001") == ""


def test_warnings_are_issued_once_each():
    cfg = get_cfg(None, ["LOG.TENSORBOARD_FREQ", "50"])
    with pytest.warns(UnusedKeyWarning, match="TENSORBOARD_FREQ") as record:
        warn_unused_keys(cfg)
    assert len(record) == 1


def test_shipped_configs_warn_about_nothing():
    """Every shipped config (digits, CIFAR, ImageNet, COCO, ...): no key it sets goes unused."""
    from mdistiller.engine.cfg import packaged_configs

    names = list(packaged_configs())
    assert len([name for name in names if name.startswith("digits/")]) > 10 and len(names) > 250
    assert {name: unused_key_notices(get_cfg(name)) for name in names} == {name: [] for name in names}
