"""Build student and teacher from a config: names, checkpoints, clear errors."""
from ..models import cifar_model_dict, imagenet_model_dict
from .checkpoint import load_checkpoint

IMAGENET_TYPES = ("imagenet",)
DOWNLOAD_HINT = "Run `bash download_ckpts.sh` from the repository root to fetch mdistiller's released CIFAR-100 teachers."


def model_zoo(dataset_type):
    return imagenet_model_dict if dataset_type in IMAGENET_TYPES else {k: v[0] for k, v in cifar_model_dict.items()}


def build_model(name, dataset_type, num_classes, pretrained=False):
    zoo = model_zoo(dataset_type)
    if name not in zoo:
        raise KeyError(
            "Unknown model {!r} for dataset {!r}. Valid names: {}".format(name, dataset_type, ", ".join(sorted(zoo)))
        )
    if dataset_type in IMAGENET_TYPES:
        return zoo[name](pretrained=pretrained, num_classes=num_classes)
    return zoo[name](num_classes=num_classes)


def teacher_checkpoint_path(cfg):
    """DISTILLER.TEACHER_CKPT when given, else the zoo's released CIFAR-100 teacher."""
    if cfg.DISTILLER.TEACHER_CKPT:
        return cfg.DISTILLER.TEACHER_CKPT
    name = cfg.DISTILLER.TEACHER
    if cfg.DATASET.TYPE != "cifar100":
        raise FileNotFoundError(
            "No released {} teacher for dataset {!r}: train one first (tools/train.py with DISTILLER.TYPE NONE "
            "DISTILLER.STUDENT {}) and pass its student_best via DISTILLER.TEACHER_CKPT".format(
                name, cfg.DATASET.TYPE, name
            )
        )
    if name not in cifar_model_dict:
        build_model(name, cfg.DATASET.TYPE, 100)  # raises the unknown-name error
    path = cifar_model_dict[name][1]
    if path is None:
        raise FileNotFoundError(
            "mdistiller releases no CIFAR-100 checkpoint for teacher {!r} (teachers: {}); pass DISTILLER.TEACHER_CKPT".format(
                name, ", ".join(k for k, v in cifar_model_dict.items() if v[1])
            )
        )
    return path


def load_teacher(cfg, num_classes):
    """The teacher with its weights (strict load), in eval mode."""
    name = cfg.DISTILLER.TEACHER
    if cfg.DATASET.TYPE in IMAGENET_TYPES and not cfg.DISTILLER.TEACHER_CKPT:
        teacher = build_model(name, cfg.DATASET.TYPE, num_classes, pretrained=True)
    else:
        teacher = build_model(name, cfg.DATASET.TYPE, num_classes)
        path = teacher_checkpoint_path(cfg)
        state = load_checkpoint(path, hint=DOWNLOAD_HINT)
        teacher.load_state_dict(state["model"] if "model" in state else state)
    return teacher.eval()


def build_student_and_teacher(cfg, num_classes, needs_teacher=True):
    student = build_model(cfg.DISTILLER.STUDENT, cfg.DATASET.TYPE, num_classes)
    teacher = load_teacher(cfg, num_classes) if needs_teacher else None
    return student, teacher
