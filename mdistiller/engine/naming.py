"""Run folder naming, as mdistiller's ``tools/train.py`` does it."""
import hashlib
import os


def experiment_name(cfg, opts=()):
    """``EXPERIMENT.PROJECT/<name>``: name = ``EXPERIMENT.NAME`` or ``EXPERIMENT.TAG``, then ``,KEY:VALUE`` for
    each command-line override (``LOG.PREFIX`` excepted).

    Path separators in the name become ``%``; a name longer than 180 characters keeps its first 160 and a
    10-digit SHA-1 of the whole (file systems cap a name at 255 bytes).
    """
    name = cfg.EXPERIMENT.NAME or cfg.EXPERIMENT.TAG
    extra = ["{}:{}".format(k, v) for k, v in zip(opts[0::2], opts[1::2]) if k != "LOG.PREFIX"]
    if extra:
        name = ",".join([name] + extra)
    name = name.replace(os.sep, "%")
    if len(name) > 180:
        digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:10]
        name = "{}~{}".format(name[:160], digest)
    return os.path.join(cfg.EXPERIMENT.PROJECT, name)


def run_dir(cfg, opts=()):
    """The run's folder: ``LOG.PREFIX/EXPERIMENT.PROJECT/<name>`` (see ``experiment_name``)."""
    return os.path.join(cfg.LOG.PREFIX, experiment_name(cfg, opts))
