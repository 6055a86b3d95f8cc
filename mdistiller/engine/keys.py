"""Run-level config keys that a given run does not use (each gets a start-up warning saying so), and values
that no run can use (an error naming the key).

Every key of EXPERIMENT/DATASET/DISTILLER/SOLVER/LOG either changes a run or, when set to a value that
this run ignores (a key of another scheduler, trainer or pipeline), is named here.
"""
import warnings

from ..dataset.split import check_val_split
from ..dataset.table import DATASETS
from ..registry import DOT_TRAINERS, data_needs

COCO_OPTIONS = "mdistiller.dataset.coco:coco_options"  # the DatasetSpec.options that read DATASET.COCO

# Run-level integer keys and their smallest meaningful value (0 epochs or an empty batch train nothing).
MINIMUM_VALUES = (
    ("SOLVER.EPOCHS", 1),
    ("SOLVER.BATCH_SIZE", 1),
    ("DATASET.TEST.BATCH_SIZE", 1),
    ("DATASET.NUM_WORKERS", 0),
    ("DATASET.TRAIN_PER_CLASS", 0),
    ("LOG.SAVE_CHECKPOINT_FREQ", 0),
    ("LOG.DIAGNOSTICS_SAMPLES", 1),
)


def check_values(cfg):
    """Raise ``ValueError`` naming the key and its value when a run-level key is below its minimum
    (:data:`MINIMUM_VALUES`), e.g. ``SOLVER.EPOCHS 0``, or the validation-split keys do not fit together."""
    for key, minimum in MINIMUM_VALUES:
        node = cfg
        for part in key.split("."):
            node = node[part]
        if node < minimum:
            raise ValueError("{} is {}; it must be at least {}".format(key, node, minimum))
    if not check_val_split(cfg.DATASET.VAL_SPLIT) and cfg.DATASET.TEST_AT_END_ONLY:
        raise ValueError("DATASET.TEST_AT_END_ONLY needs a validation split to select the epoch on: set "
                         "DATASET.VAL_SPLIT (images per class, or a fraction of each class)")


class UnusedKeyWarning(UserWarning):
    """A config key is set but has no effect on this run."""


def unused_key_notices(cfg, defaults=None):
    """Messages for the keys ``cfg`` sets to a non-default value that the run does not use."""
    from .cfg import CFG
    from .data import pipeline_of

    defaults = CFG if defaults is None else defaults
    dataset = DATASETS.get(str(cfg.DATASET.TYPE).lower())  # None: an unknown name, reported when the data is built
    notices = []

    def changed(section, *path):
        value, default = cfg[section], defaults[section]
        for part in path:
            value, default = value[part], default[part]
        return value != default

    if changed("LOG", "TENSORBOARD_FREQ"):
        notices.append("LOG.TENSORBOARD_FREQ {} is not supported: TensorBoard (and wandb) get one record per "
                       "epoch here".format(cfg.LOG.TENSORBOARD_FREQ))
    if changed("DATASET", "NUM_WORKERS") and dataset is not None and pipeline_of(cfg) == "batched":
        notices.append("DATASET.NUM_WORKERS {} is not used by the batched data pipeline (batches are cut on the "
                       "training device); set DATASET.PIPELINE per_sample for DataLoader workers".format(
                           cfg.DATASET.NUM_WORKERS))
    if changed("SOLVER", "DOT", "DELTA") and cfg.SOLVER.TRAINER not in DOT_TRAINERS:
        notices.append("SOLVER.DOT.DELTA is used only with SOLVER.TRAINER dot or crd_dot (this run: {})".format(
            cfg.SOLVER.TRAINER))
    if cfg.SOLVER.LR_SCHEDULER == "step" and changed("SOLVER", "LR_MIN"):
        notices.append("SOLVER.LR_MIN is used only with SOLVER.LR_SCHEDULER cosine")
    if cfg.SOLVER.LR_SCHEDULER == "cosine":
        for key in ("LR_DECAY_STAGES", "LR_DECAY_RATE"):
            if changed("SOLVER", key):
                notices.append("SOLVER.{} is used only with SOLVER.LR_SCHEDULER step".format(key))
    if not cfg.LOG.DIAGNOSTICS and changed("LOG", "DIAGNOSTICS_SAMPLES"):
        notices.append("LOG.DIAGNOSTICS_SAMPLES is used only with LOG.DIAGNOSTICS True")
    if cfg.DISTILLER.TEACHER_CKPT and not data_needs(cfg).teacher:
        notices.append("DISTILLER.TEACHER_CKPT is not used: {} has no teacher".format(cfg.DISTILLER.TYPE))
    if cfg.DATASET.INPUT_SIZE is not None and not (dataset is not None and dataset.resize):
        notices.append("DATASET.INPUT_SIZE does not resize the images (each dataset has its own size, only digits "
                       "is resized); it is only the probe size of methods that size projectors from the models' features")
    if cfg.DATASET.TRAIN_PER_CLASS <= 0 and changed("DATASET", "SUBSET_SEED"):
        notices.append("DATASET.SUBSET_SEED is used only with DATASET.TRAIN_PER_CLASS > 0")
    if changed("SOLVER", "WARMUP_FACTOR") and cfg.SOLVER.WARMUP_ITERS <= 0:
        notices.append("SOLVER.WARMUP_FACTOR is used only with SOLVER.WARMUP_ITERS > 0")
    detection = dataset is not None and dataset.task == "detection"
    if changed("DETECTION") and dataset is not None and not detection:
        notices.append("the DETECTION keys are used only by detection datasets ({}); DATASET.TYPE {} is {}".format(
            ", ".join(name for name, spec in DATASETS.items() if spec.task == "detection"), dataset.name, dataset.task))
    if changed("DATASET", "COCO") and dataset is not None and dataset.options != COCO_OPTIONS:
        notices.append("DATASET.COCO names the files of DATASET.TYPE coco only (this run: {})".format(dataset.name))
    if not cfg.DATASET.VAL_SPLIT and changed("DATASET", "SPLIT_SEED"):
        notices.append("DATASET.SPLIT_SEED is used only with DATASET.VAL_SPLIT > 0")
    return notices


def warn_unused_keys(cfg):
    """Issue an :class:`UnusedKeyWarning` for each of :func:`unused_key_notices`; returns the messages."""
    notices = unused_key_notices(cfg)
    for message in notices:
        warnings.warn(message, UnusedKeyWarning, stacklevel=2)
    return notices
