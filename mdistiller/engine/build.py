"""Build student and teacher from a config: names, checkpoints, clear errors. Which zoo a dataset's models
come from, where its teachers come from and which task it serves (classifiers or detectors) is the dataset
table's (:mod:`mdistiller.dataset.table`)."""
import os

import torch.nn as nn

from ..dataset.table import dataset_spec, task_of
from ..models import RELEASE_TITLES, RELEASED_MODEL_DICTS, cifar_model_dict, imagenet_model_dict
from .checkpoint import CheckpointError, load_checkpoint, load_weights

MODEL_ZOOS = ("auto", "cifar", "imagenet", "detection")
# torchvision's COCO detector (download manifest entry) by backbone name: the detection zoo's released teachers.
TORCHVISION_DETECTORS = {"ResNet50": "fasterrcnn_resnet50_fpn_coco"}
IMAGENET_CLASSES = 1000
DOWNLOAD_HINT = ("Fetch mdistiller's released CIFAR-100 teachers with `mdistiller-download teachers` in this folder "
                 "(MDISTILLER_CKPT_ROOT moves them), or give another checkpoint as DISTILLER.TEACHER_CKPT.")


def zoo_kind(dataset_type, zoo="auto"):
    """``"imagenet"`` or ``"cifar"``: ``zoo`` itself, or for ``"auto"`` the dataset's own zoo."""
    zoo = str(zoo).lower()
    if zoo not in MODEL_ZOOS:
        raise ValueError("DISTILLER.MODEL_ZOO must be one of {}, got {!r}".format(", ".join(MODEL_ZOOS), zoo))
    if zoo == "auto":
        return dataset_spec(dataset_type).zoo
    return zoo


def released_model_dict(dataset_type):
    """The mdistiller model dict of the dataset's released teachers (``DatasetSpec.teachers``), or {}."""
    return RELEASED_MODEL_DICTS.get(dataset_spec(dataset_type).teachers, {})


def cifar_zoo_dict(dataset_type):
    """``name -> (constructor, teacher checkpoint)`` of the CIFAR-layout zoo for ``dataset_type``: the dataset's
    released model dict over the CIFAR models (for Tiny-ImageNet, mdistiller's ``tiny_imagenet_model_dict``,
    whose MobileNetV2 is the 64 px variant; the CIFAR models run at 64 px too)."""
    return dict(cifar_model_dict, **released_model_dict(dataset_type))


def model_zoo(dataset_type, zoo="auto"):
    kind = zoo_kind(dataset_type, zoo)
    if kind == "detection":
        from ..models.detection import DETECTION_BACKBONES

        return DETECTION_BACKBONES
    if kind == "imagenet":
        return imagenet_model_dict
    return {k: v[0] for k, v in cifar_zoo_dict(dataset_type).items()}


def fresh_head(model, num_classes):
    """Replace ``model.fc`` by a new ``nn.Linear(in_features, num_classes)`` (torch's default init)."""
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


def build_model(name, dataset_type, num_classes, pretrained=False, zoo="auto"):
    """Model ``name`` of the zoo (``zoo``: see ``DISTILLER.MODEL_ZOO``) with ``num_classes`` outputs.

    ``pretrained`` (ImageNet zoo only): torchvision's ImageNet weights, read through torch.hub's
    hash-checked download; for ``num_classes`` != 1000 the backbone keeps them and the head is a fresh
    ``Linear(in_features, num_classes)`` (how ImageNet models are fine-tuned on other datasets).
    """
    kind = zoo_kind(dataset_type, zoo)
    models = model_zoo(dataset_type, kind)
    if name not in models:
        raise KeyError(
            "Unknown model {!r} for dataset {!r} in the {} zoo (DISTILLER.MODEL_ZOO). Valid names: {}".format(
                name, dataset_type, kind, ", ".join(sorted(models))
            )
        )
    if kind == "imagenet":
        if pretrained and num_classes != IMAGENET_CLASSES:
            return fresh_head(models[name](pretrained=True), num_classes)
        return models[name](pretrained=pretrained, num_classes=num_classes)
    if pretrained:
        raise ValueError(
            "ImageNet weights exist only for the ImageNet zoo; {!r} is a CIFAR-zoo model "
            "(set DISTILLER.MODEL_ZOO imagenet to use the torchvision architecture)".format(name)
        )
    return models[name](num_classes=num_classes)


def teacher_recipe(name, dataset_type):
    """How to make teacher ``name`` for ``dataset_type`` when no file holds it: a shipped config that trains that model
    alone on that dataset (``digits/teacher.yaml``) as a command and the path of its ``student_best``; else a
    generic command."""
    from .._cli import load_yaml_mapping
    from ..catalogue import packaged_configs, resolve_config_path
    from .cfg import get_cfg
    from .naming import run_dir

    for config in packaged_configs():
        if not config.startswith(dataset_type + "/"):
            continue
        tree = load_yaml_mapping(resolve_config_path(config))
        distiller, data = tree.get("DISTILLER") or {}, tree.get("DATASET") or {}
        if (distiller.get("TYPE"), distiller.get("STUDENT"), data.get("TYPE")) == ("NONE", name, dataset_type):
            trained = os.path.normpath(os.path.join(run_dir(get_cfg(config)), "student_best"))
            return "train it with `mdistiller-train --cfg {}` and pass DISTILLER.TEACHER_CKPT {}".format(config, trained)
    return ("train it with `mdistiller-train --cfg <config> DISTILLER.TYPE NONE DISTILLER.STUDENT {}` and pass its "
            "student_best as DISTILLER.TEACHER_CKPT".format(name))


def released_checkpoint(name, dataset_type, zoo="auto"):
    """The path of mdistiller's released checkpoint of model ``name`` for ``dataset_type``'s CIFAR-layout zoo
    (``DatasetSpec.teachers``); ``FileNotFoundError`` saying what to do when there is none."""
    kind = zoo_kind(dataset_type, zoo)
    released = released_model_dict(dataset_type) if kind == "cifar" else {}
    if not released:
        build_model(name, dataset_type, 1, zoo=kind)  # an unknown name says so first
        raise FileNotFoundError("No released {} teacher for dataset {!r} (model zoo {!r}): {}".format(
            name, dataset_type, kind, teacher_recipe(name, dataset_type)))
    if name not in cifar_zoo_dict(dataset_type):
        build_model(name, dataset_type, 1, zoo=kind)  # raises the unknown-name error
    path = released.get(name, (None, None))[1]
    if path is None:
        raise FileNotFoundError(
            "mdistiller releases no {} checkpoint for teacher {!r} (teachers: {}); pass DISTILLER.TEACHER_CKPT".format(
                RELEASE_TITLES[dataset_spec(dataset_type).teachers], name,
                ", ".join(k for k, v in released.items() if v[1])
            )
        )
    return path


def teacher_checkpoint_path(cfg):
    """DISTILLER.TEACHER_CKPT when given, else the dataset's released teacher (:func:`released_checkpoint`)."""
    if cfg.DISTILLER.TEACHER_CKPT:
        return cfg.DISTILLER.TEACHER_CKPT
    return released_checkpoint(cfg.DISTILLER.TEACHER, cfg.DATASET.TYPE, cfg.DISTILLER.MODEL_ZOO)


def teacher_source(cfg):
    """The checkpoint file the configured teacher is read from, or None for torchvision's pretrained weights (a
    dataset whose teachers come from torchvision, ImageNet zoo, no DISTILLER.TEACHER_CKPT). Raises when no teacher
    can be had (:func:`released_checkpoint`)."""
    if dataset_spec(cfg.DATASET.TYPE).teachers == "torchvision" \
            and zoo_kind(cfg.DATASET.TYPE, cfg.DISTILLER.MODEL_ZOO) == "imagenet" and not cfg.DISTILLER.TEACHER_CKPT:
        return None
    return teacher_checkpoint_path(cfg)


def missing_teacher_hint(cfg):
    """What to do when the teacher's checkpoint file is missing: fetch a released one (the download hint is for the
    zoo's released teachers), or make the one DISTILLER.TEACHER_CKPT names."""
    if not cfg.DISTILLER.TEACHER_CKPT:
        return DOWNLOAD_HINT
    return "Check DISTILLER.TEACHER_CKPT: it names a teacher's weights; " + teacher_recipe(
        cfg.DISTILLER.TEACHER, cfg.DATASET.TYPE)


def load_teacher(cfg, num_classes):
    """The teacher with its weights (strict load; a file of another model or class count says which), in eval
    mode: torchvision's pretrained weights when :func:`teacher_source` says so, else a checkpoint."""
    name = cfg.DISTILLER.TEACHER
    zoo = cfg.DISTILLER.MODEL_ZOO
    path = teacher_source(cfg)
    if path is None:
        return build_model(name, cfg.DATASET.TYPE, num_classes, pretrained=True, zoo=zoo).eval()
    teacher = build_model(name, cfg.DATASET.TYPE, num_classes, zoo=zoo)
    state = load_checkpoint(path, hint=missing_teacher_hint(cfg))
    state = state["model"] if isinstance(state, dict) and "model" in state else state
    load_weights(teacher, state, path, "DISTILLER.TEACHER {}".format(name))
    return teacher.eval()


def build_detector_model(cfg, name, category_ids, pretrained=False, num_outputs=None, teacher=False):
    """A Faster R-CNN + FPN detector (:mod:`mdistiller.models.detection`) around backbone ``name`` for classes
    ``category_ids``, with the ``DETECTION.*`` settings and the student's (or the teacher's) input normalisation."""
    from ..models.detection import build_detector, detector_settings

    d = cfg.DETECTION
    prefix = "TEACHER_" if teacher else ""
    settings = detector_settings(cfg)
    if teacher:
        settings["norm"] = "FrozenBN"  # frozen: BatchNorm's statistics and affine stay as loaded, whatever the file
    if name not in model_zoo(cfg.DATASET.TYPE, "detection"):
        raise KeyError("Unknown detection backbone {!r} for dataset {!r} (DISTILLER.STUDENT / TEACHER). Valid names: "
                       "{}".format(name, cfg.DATASET.TYPE, ", ".join(model_zoo(cfg.DATASET.TYPE, "detection"))))
    return build_detector(name, category_ids, settings, pretrained=pretrained, num_outputs=num_outputs,
                          pixel_mean=list(d[prefix + "PIXEL_MEAN"]), pixel_std=list(d[prefix + "PIXEL_STD"]),
                          input_format=str(d[prefix + "INPUT_FORMAT"]))


def detection_teacher_checkpoint(cfg):
    """DISTILLER.TEACHER_CKPT, else torchvision's COCO detector of DISTILLER.TEACHER for a dataset whose teachers come
    from torchvision (fetched through the download manifest, hash-checked, when missing)."""
    if cfg.DISTILLER.TEACHER_CKPT:
        return cfg.DISTILLER.TEACHER_CKPT
    name = cfg.DISTILLER.TEACHER
    released = TORCHVISION_DETECTORS if dataset_spec(cfg.DATASET.TYPE).teachers == "torchvision" else {}
    if name not in released:
        raise FileNotFoundError("No released {} detector for dataset {!r}{}: {}".format(
            name, cfg.DATASET.TYPE,
            " (torchvision releases COCO weights for {} only)".format(", ".join(released)) if released else "",
            teacher_recipe(name, cfg.DATASET.TYPE)))
    from ..download import fetch_file

    return fetch_file(released[name])


def load_detection_teacher(cfg, category_ids):
    """The teacher detector with its weights (strict load), in eval mode. Its output columns follow the file: K + 1
    (background + the dataset's classes, as the detectors trained here) or one per COCO category id (torchvision's
    91); :attr:`~mdistiller.models.detection.Detector.distill_columns` maps either to the same K classes."""
    path = detection_teacher_checkpoint(cfg)
    hint = (missing_teacher_hint(cfg) if cfg.DISTILLER.TEACHER_CKPT
            else "Run `mdistiller-download {}`.".format(TORCHVISION_DETECTORS.get(cfg.DISTILLER.TEACHER, "")))
    state = load_checkpoint(path, hint=hint)
    state = state["model"] if isinstance(state, dict) and "model" in state else state
    key = "roi_heads.box_predictor.cls_score.weight"
    if not isinstance(state, dict) or key not in state:
        raise CheckpointError("{} is not the checkpoint of a Faster R-CNN of this project or of torchvision (no {}). "
                              "{}".format(os.path.abspath(path), key, hint))
    teacher = build_detector_model(cfg, cfg.DISTILLER.TEACHER, category_ids, num_outputs=state[key].shape[0],
                                   teacher=True)
    own = teacher.state_dict()  # a BatchNorm's step counter has no place in the teacher's FrozenBN
    state = {k: v for k, v in state.items() if k in own or not k.endswith(".num_batches_tracked")}
    load_weights(teacher, state, path, "DISTILLER.TEACHER {}".format(cfg.DISTILLER.TEACHER))
    return teacher.eval()


def build_detectors(cfg, category_ids, needs_teacher=True):
    """The student detector (``DISTILLER.STUDENT_PRETRAINED``: its backbone from ImageNet weights) and, if needed,
    the teacher."""
    student = build_detector_model(cfg, cfg.DISTILLER.STUDENT, category_ids,
                                   pretrained=bool(cfg.DISTILLER.STUDENT_PRETRAINED))
    teacher = load_detection_teacher(cfg, category_ids) if needs_teacher else None
    return student, teacher


def build_student_and_teacher(cfg, num_classes, needs_teacher=True, category_ids=None):
    """The student (``DISTILLER.STUDENT_PRETRAINED``: from ImageNet weights) and, if needed, the teacher: classifiers
    of ``num_classes`` classes, or for a detection dataset detectors of the classes ``category_ids`` (the training
    set's ``category_ids``)."""
    if task_of(cfg) == "detection":
        if category_ids is None or len(category_ids) != num_classes:
            raise ValueError("building detectors needs the dataset's {} category ids, got {}".format(
                num_classes, category_ids))
        return build_detectors(cfg, category_ids, needs_teacher)
    zoo = cfg.DISTILLER.MODEL_ZOO
    pretrained = bool(cfg.DISTILLER.STUDENT_PRETRAINED)
    student = build_model(cfg.DISTILLER.STUDENT, cfg.DATASET.TYPE, num_classes, pretrained=pretrained, zoo=zoo)
    teacher = load_teacher(cfg, num_classes) if needs_teacher else None
    return student, teacher
