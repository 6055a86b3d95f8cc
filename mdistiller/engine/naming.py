"""Run folder naming, as mdistiller's ``tools/train.py`` does it."""
import hashlib
import os


def _digest(text, digits):
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:digits]


def override_text(value):
    """An override's value as written into a folder name: a path keeps its last part and an 8-digit SHA-1 of the
    whole value (``runs/teacher/seed0/student_best`` -> ``student_best~1f0c...``), so two paths never share a
    folder and the name does not spell out the path."""
    text = str(value)
    if "/" in text or os.sep in text:
        return "{}~{}".format(os.path.basename(os.path.normpath(text)) or "path", _digest(text, 8))
    return text


def experiment_name(cfg, opts=()):
    """``EXPERIMENT.PROJECT/<name>``: name = ``EXPERIMENT.NAME`` or ``EXPERIMENT.TAG``, then ``,KEY:VALUE`` for
    each command-line override (``LOG.PREFIX`` excepted; a path value by its last part, :func:`override_text`).

    Path separators left in the name become ``%``; a name longer than 180 characters keeps its first 160 and a
    10-digit SHA-1 of the whole (file systems cap a name at 255 bytes).
    """
    name = cfg.EXPERIMENT.NAME or cfg.EXPERIMENT.TAG
    extra = ["{}:{}".format(k, override_text(v)) for k, v in zip(opts[0::2], opts[1::2]) if k != "LOG.PREFIX"]
    if extra:
        name = ",".join([name] + extra)
    name = name.replace(os.sep, "%").replace("/", "%")
    if len(name) > 180:
        name = "{}~{}".format(name[:160], _digest(name, 10))
    return os.path.join(cfg.EXPERIMENT.PROJECT, name)


def run_dir(cfg, opts=()):
    """The run's folder: ``LOG.PREFIX/EXPERIMENT.PROJECT/<name>`` (see ``experiment_name``)."""
    return os.path.join(cfg.LOG.PREFIX, experiment_name(cfg, opts))
