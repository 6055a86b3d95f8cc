"""The configuration tree (yacs), a superset of mdistiller's.

Every key mdistiller defines keeps its name, default and type (except KD.TEMPERATURE, a
float here so fractional temperatures merge), so its yaml files merge unchanged; keys added
here default to mdistiller's behaviour. This module holds the run-level sections (EXPERIMENT,
DATASET, DISTILLER, SOLVER, LOG) and is the one copy of their defaults; each method's block is
declared by its class (``DEFAULTS``) and added to ``CFG`` when the class is registered, so a
method added later (even in a test) merges its yaml. ``CFG`` is a :class:`Config`, whose merges
rename the old key names of a method (``ALIASES`` of its class) and accept an int written for a
float key: ``CFG.clone().merge_from_file(path)`` (mdistiller's Python API) reads a released
mdistiller, WKD or WKL yaml exactly as ``mdistiller-train --cfg`` does.

Config files: a path that exists (relative to the current directory) is read as is; otherwise a
name of a config shipped inside the package, ``mdistiller/configs/`` (``digits/kd.yaml``, also
written ``configs/digits/kd.yaml``), is read from there (:func:`mdistiller.catalogue.resolve_config_path`),
so every shipped config works from an installed wheel without the repository. An empty file, or one
whose top level is not a mapping, is an error naming the file.
"""
import copy

from yacs.config import CfgNode as CN

from .. import distillers  # noqa: F401  (the built-in methods register themselves)
from .._cli import load_yaml_mapping
from ..catalogue import packaged_configs, resolve_config_path  # noqa: F401  (the config names users give)
from ..registry import on_register

KEY_ALIASES = {}  # "OLD.DOTTED.KEY" -> "NEW.DOTTED.KEY", from every registered class's ALIASES


class Config(CN):
    """A yacs ``CfgNode`` whose merges (:meth:`merge_from_file`, :meth:`merge_from_list`, :meth:`merge_from_dict`)
    move values written under an old key name (``KEY_ALIASES``) to the current one and make an int written for
    a float key a float; an unknown key fails with yacs' ``KeyError`` naming the key, a value of another type
    with its ``ValueError``. Each merge returns the config."""

    def merge_from_file(self, cfg_filename):
        """Merge a yaml file (``cfg_filename``: see :func:`resolve_config_path`); an empty file or one whose top
        level is not a mapping is an error naming the file."""
        return self._merge_tree(load_yaml_mapping(resolve_config_path(cfg_filename)))

    def merge_from_dict(self, overrides):
        """Merge ``{"A.B.C": value}`` as :meth:`merge_from_list` merges ``A.B.C VALUE``."""
        tree = {}
        for key, value in overrides.items():
            node, leaf = _leaf(tree, key)
            node[leaf] = value
        return self._merge_tree(tree)

    def merge_from_list(self, cfg_list):
        """Merge ``KEY VALUE`` pairs from the command line (values parsed like yacs)."""
        if len(cfg_list) % 2:
            raise ValueError("Command-line overrides must be KEY VALUE pairs, got an odd number: {}".format(cfg_list))
        return self.merge_from_dict({key: CN._decode_cfg_value(raw) for key, raw in zip(cfg_list[0::2], cfg_list[1::2])})

    def _merge_tree(self, tree):
        self.merge_from_other_cfg(Config(_coerce_numbers(_rename_aliases(tree), self)))
        return self


CFG = Config()

# Experiment
CFG.EXPERIMENT = Config()
CFG.EXPERIMENT.PROJECT = "distill"
CFG.EXPERIMENT.NAME = ""
CFG.EXPERIMENT.TAG = "default"
CFG.EXPERIMENT.SEED = 0  # seeds python, numpy and torch (official WKD key)
CFG.EXPERIMENT.DEVICE = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
CFG.EXPERIMENT.LOGIT_STAND = False  # mdistiller's logit-standardization switch (unused by our methods)

# Dataset
CFG.DATASET = Config()
CFG.DATASET.TYPE = "cifar100"
CFG.DATASET.ROOT = "data"
CFG.DATASET.DOWNLOAD = True  # torchvision download when the files are absent
CFG.DATASET.NUM_CLASSES = 0  # 0: the dataset's own number of classes
CFG.DATASET.INPUT_SIZE = None  # official WKD key; probe size of feature methods; resizes only digits (default 32)
# >0: train on at most this many images per class (a labelled subset), drawn with SUBSET_SEED (-1: EXPERIMENT.SEED)
CFG.DATASET.TRAIN_PER_CLASS = 0
CFG.DATASET.SUBSET_SEED = -1
# >0: a validation split held out of the training set (a whole number: images per class; below 1: a fraction of each
# class), stratified, drawn with SPLIT_SEED (the same for every method and seed); training uses the rest, every epoch
# is evaluated on it and the epoch of best validation accuracy is kept (val_best). 0: no split (mdistiller's runs).
CFG.DATASET.VAL_SPLIT = 0.0
CFG.DATASET.SPLIT_SEED = 0
# With a split: evaluate the test set only at the end, on the last and the val_best epoch's model.
CFG.DATASET.TEST_AT_END_ONLY = False
CFG.DATASET.NUM_WORKERS = 2
# "auto": "batched" for cifar100/cifar10/svhn/digits (whole batches cut on the training device), "per_sample"
# otherwise (the dataset's transform per image in DataLoader workers); or either name.
CFG.DATASET.PIPELINE = "auto"
CFG.DATASET.TEST = Config()
CFG.DATASET.TEST.BATCH_SIZE = 64
# COCO-format detection sets (DATASET.TYPE coco): images folder and json of each split, relative to DATASET.ROOT.
CFG.DATASET.COCO = Config()
CFG.DATASET.COCO.TRAIN_IMAGES = "coco/train2017"
CFG.DATASET.COCO.TRAIN_ANNOTATIONS = "coco/annotations/instances_train2017.json"
CFG.DATASET.COCO.VAL_IMAGES = "coco/val2017"
CFG.DATASET.COCO.VAL_ANNOTATIONS = "coco/annotations/instances_val2017.json"

# Distiller
CFG.DISTILLER = Config()
CFG.DISTILLER.TYPE = "NONE"  # Vanilla as default
CFG.DISTILLER.TEACHER = "ResNet50"
CFG.DISTILLER.STUDENT = "resnet32"
CFG.DISTILLER.TEACHER_CKPT = ""  # overrides the zoo's checkpoint path for the teacher
# Which zoo the names refer to: "auto" (the ImageNet zoo for DATASET.TYPE imagenet, the CIFAR zoo otherwise),
# "cifar", or "imagenet" (torchvision-layout ImageNet architectures, 7x7 stem, at the dataset's own input size).
CFG.DISTILLER.MODEL_ZOO = "auto"
# Start the student from torchvision's ImageNet weights (ImageNet zoo only); a fresh head when classes != 1000.
CFG.DISTILLER.STUDENT_PRETRAINED = False

# Detection (datasets of task "detection": Faster R-CNN + FPN, mdistiller.models.detection). Defaults are
# Detectron2's (mdistiller's configs/Base-Distillation.yaml) where torchvision allows; pixel values in [0, 1].
CFG.DETECTION = Config()
CFG.DETECTION.INPUT = Config()
CFG.DETECTION.INPUT.MIN_SIZE_TRAIN = [640, 672, 704, 736, 768, 800]  # short side, one drawn per image; 0: keep
CFG.DETECTION.INPUT.MAX_SIZE_TRAIN = 1333
CFG.DETECTION.INPUT.MIN_SIZE_TEST = 800
CFG.DETECTION.INPUT.MAX_SIZE_TEST = 1333
CFG.DETECTION.INPUT.FLIP_PROB = 0.5  # horizontal flips in training
CFG.DETECTION.PIXEL_MEAN = [0.485, 0.456, 0.406]  # the student's input normalisation (RGB order)
CFG.DETECTION.PIXEL_STD = [0.229, 0.224, 0.225]
CFG.DETECTION.INPUT_FORMAT = "RGB"  # "BGR": the student's first conv reads the channels reversed
CFG.DETECTION.TEACHER_PIXEL_MEAN = [0.485, 0.456, 0.406]  # the teacher's own (mdistiller's TEACHER.MODEL.PIXEL_*)
CFG.DETECTION.TEACHER_PIXEL_STD = [0.229, 0.224, 0.225]
CFG.DETECTION.TEACHER_INPUT_FORMAT = "RGB"
CFG.DETECTION.FPN_CHANNELS = 256
CFG.DETECTION.BACKBONE = Config()
CFG.DETECTION.BACKBONE.NORM = "FrozenBN"  # or "BN" (BatchNorm: backbones trained from scratch)
CFG.DETECTION.BACKBONE.FREEZE_AT = 2  # stages frozen in an ImageNet-initialised backbone (1: stem, 2: + first stage)
CFG.DETECTION.ANCHOR_SIZES = [32, 64, 128, 256, 512]  # one per FPN level P2-P6
CFG.DETECTION.ASPECT_RATIOS = [0.5, 1.0, 2.0]
CFG.DETECTION.RPN = Config()
CFG.DETECTION.RPN.PRE_NMS_TOPK_TRAIN = 2000  # per level
CFG.DETECTION.RPN.PRE_NMS_TOPK_TEST = 1000
CFG.DETECTION.RPN.POST_NMS_TOPK_TRAIN = 1000  # per image
CFG.DETECTION.RPN.POST_NMS_TOPK_TEST = 1000
CFG.DETECTION.RPN.NMS_THRESH = 0.7
CFG.DETECTION.RPN.BATCH_SIZE_PER_IMAGE = 256
CFG.DETECTION.RPN.POSITIVE_FRACTION = 0.5
CFG.DETECTION.ROI_HEADS = Config()
CFG.DETECTION.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
CFG.DETECTION.ROI_HEADS.POSITIVE_FRACTION = 0.25
CFG.DETECTION.ROI_HEADS.SCORE_THRESH_TEST = 0.05
CFG.DETECTION.ROI_HEADS.NMS_THRESH_TEST = 0.5
CFG.DETECTION.ROI_HEADS.DETECTIONS_PER_IMAGE = 100
CFG.DETECTION.ROI_BOX_HEAD = Config()
CFG.DETECTION.ROI_BOX_HEAD.FC_DIM = 1024  # two fully connected layers of this width
CFG.DETECTION.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
CFG.DETECTION.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 2  # torchvision's MultiScaleRoIAlign (Detectron2: 0, adaptive)

# Solver
CFG.SOLVER = Config()
CFG.SOLVER.TRAINER = "base"  # mdistiller key: "base" and "crd" both run the one trainer
CFG.SOLVER.BATCH_SIZE = 64
CFG.SOLVER.EPOCHS = 240
CFG.SOLVER.LR = 0.05
CFG.SOLVER.LR_DECAY_STAGES = [150, 180, 210]
CFG.SOLVER.LR_DECAY_RATE = 0.1
CFG.SOLVER.WEIGHT_DECAY = 0.0001
CFG.SOLVER.MOMENTUM = 0.9
CFG.SOLVER.TYPE = "SGD"
CFG.SOLVER.NESTEROV = False  # the official WKD/WKL recipe sets True
CFG.SOLVER.LR_SCHEDULER = "step"  # "step" (mdistiller) | "cosine"
CFG.SOLVER.LR_MIN = 0.0  # cosine: the floor the LR anneals to (torch's CosineAnnealingLR eta_min)
# Linear LR warm-up over the run's first iterations, from WARMUP_FACTOR x the scheduled LR (Detectron2's
# WARMUP_ITERS / WARMUP_FACTOR, "linear" method); 0: none (mdistiller's classification recipes have none).
CFG.SOLVER.WARMUP_ITERS = 0
CFG.SOLVER.WARMUP_FACTOR = 0.001
CFG.SOLVER.AMP = False  # autocast for the forward; distillation losses stay fp32
CFG.SOLVER.CHANNELS_LAST = False
CFG.SOLVER.COMPILE = False  # torch.compile the student and the teacher (in place: checkpoints keep their keys)
CFG.SOLVER.DOT = Config()
CFG.SOLVER.DOT.DELTA = 0.075

# Log
CFG.LOG = Config()
CFG.LOG.TENSORBOARD_FREQ = 500  # mdistiller key; records are per epoch here (a start-up warning says so)
CFG.LOG.SAVE_CHECKPOINT_FREQ = 40
CFG.LOG.PREFIX = "./output"
CFG.LOG.WANDB = False  # mdistiller defaults to True; we never log remotely unless asked
CFG.LOG.PROGRESS_BAR = True
CFG.LOG.DIAGNOSTICS = True  # per-epoch alignment diagnostics (KL, TC, NC, W, logit gradients)
CFG.LOG.DIAGNOSTICS_SAMPLES = 256  # size of the fixed validation probe batch the diagnostics use

# ---------------------------------------------------------------------------
# Method blocks declared by the registered classes, and their key aliases
# ---------------------------------------------------------------------------


def _add_method(cls):
    if cls.task != "classification":
        return  # a task's variant shares its method's block and aliases
    if cls.DEFAULTS is not None:
        CFG[cls.registry_name] = Config(copy.deepcopy(cls.DEFAULTS))
    KEY_ALIASES.update(cls.ALIASES)


on_register(_add_method)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _leaf(tree, dotted):
    """``(dict, last part)``: the nested dict of ``tree`` that holds the dotted key, created where missing."""
    *path, leaf = dotted.split(".")
    for part in path:
        tree = tree.setdefault(part, {})
    return tree, leaf


def _rename_aliases(tree):
    """Move values written under an old key name (``KEY_ALIASES``) to the current one, in a nested dict."""
    for old, new in KEY_ALIASES.items():
        parts = old.split(".")
        node = tree
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                break
        if not isinstance(node, dict) or parts[-1] not in node:
            continue
        value = node.pop(parts[-1])
        target, leaf = _leaf(tree, new)
        if leaf in target:
            raise ValueError("{} and its old name {} are both set; keep only {}".format(new, old, new))
        target[leaf] = value
    return tree


def _coerce_numbers(value, default):
    """int -> float where the default is a float (yaml writes 1 for 1.0), recursively."""
    if isinstance(default, CN) and isinstance(value, dict):
        return {k: (_coerce_numbers(v, default[k]) if k in default else v) for k, v in value.items()}
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)) and default:
        if all(isinstance(d, float) for d in default):
            return type(value)(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value)
    return value


def get_cfg(cfg_file=None, opts=()):
    """A fresh copy of the defaults with ``cfg_file`` and ``opts`` merged, frozen."""
    cfg = CFG.clone()
    if cfg_file:
        cfg.merge_from_file(cfg_file)
    if opts:
        cfg.merge_from_list(list(opts))
    cfg.freeze()
    return cfg


def _is_detection(cfg):
    from ..dataset.table import DATASETS

    spec = DATASETS.get(str(cfg.DATASET.TYPE).lower())
    return spec is not None and spec.task == "detection"


def show_cfg(cfg):
    """The config sections that matter for a run, as yaml text (mdistiller prints the same)."""
    dump_cfg = Config()
    sections = ("EXPERIMENT", "DATASET", "DISTILLER", "SOLVER", "LOG") + (("DETECTION",) if _is_detection(cfg) else ())
    for section in sections:
        dump_cfg[section] = cfg[section]
    if cfg.DISTILLER.TYPE in cfg:
        dump_cfg[cfg.DISTILLER.TYPE] = cfg[cfg.DISTILLER.TYPE]
    return dump_cfg.dump()
