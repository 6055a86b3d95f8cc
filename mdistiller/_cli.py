"""What the command-line entry points share: one line for a user's mistake, a traceback only with ``--debug``.

A mistake in what the user asked for (an unknown method or model, a missing, unreadable or damaged file,
a yaml syntax error, an unknown config key, a value of the wrong type, a folder that cannot be written)
raises an exception somewhere below the command line. :func:`run_main` is the one place that translates
those into one line on stderr, ``<prog>: error: <what is wrong> (<what to do>)``, and exit code 2
(argparse's code for a usage error); ``--debug`` re-raises them with the traceback. Which exceptions are
a user's mistake is decided here, from the exception alone (:func:`user_error_text`), so the code below
can move without touching the translation; any other exception is a bug and keeps its traceback.

This module imports nothing from mdistiller and nothing heavy (every entry point imports it before
parsing its arguments, and ``--help`` must stay fast).
"""
import argparse
import errno
import os
import pickle
import re
import sys

EXIT_USAGE = 2
# A training process stopped on SIGTERM or SIGUSR2 (preemption, time limit) that left its run resumable:
# not a failure; the run continues with --resume. The value is sysexits.h's EX_TEMPFAIL ("try again later").
EXIT_REQUEUE = 75

# A config override key: an upper-case dotted path (SOLVER.EPOCHS); config files end in .yaml (lower case).
OVERRIDE_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")

# Optional packages and the extra that installs each.
OPTIONAL_PACKAGES = {"matplotlib": "plots", "submitit": "slurm", "wandb": "wandb", "optuna": "tune"}


class UsageError(ValueError):
    """A mistake in the command line or the files it names; the message says what to do."""


# yacs' messages, and what to do about them.
_HINTS = (
    ("Non-existent config key", "check its spelling; `mdistiller-train --cfg FILE --print-config` lists the keys"),
    ("Type mismatch", "give a value of the key's type; `mdistiller-train --cfg FILE --print-config` shows the current values"),
)
# What to do about an operating-system error on a file the user named.
_OS_HINTS = {
    errno.EACCES: "choose a folder you may write to, or change its permissions",
    errno.EPERM: "choose a folder you may write to, or change its permissions",
    errno.EROFS: "the file system is read-only: choose another folder",
    errno.ENOTDIR: "a part of this path is a file, not a folder",
    errno.ENOSPC: "the disk is full: free some space or choose another folder",
    errno.EISDIR: "give a file, not a folder",
    errno.EEXIST: "a file of that name is in the way: choose another path",
}
_YAML_TYPES = {str: "a plain string", list: "a list", int: "a number", float: "a number", bool: "a boolean"}


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line: ``<prog>: error: <message> (see <prog> --help)``."""

    def error(self, message):
        self.exit(EXIT_USAGE, "{}: error: {} (see {} --help)\n".format(self.prog, message, self.prog))


def add_debug_flag(parser):
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    return parser


def _arity(action):
    """How many words an option takes: 0, 1, or None for 'as many as follow'."""
    if action.nargs == 0 or isinstance(action, (argparse._StoreConstAction, argparse._CountAction,
                                                  argparse._HelpAction, argparse._VersionAction)):
        return 0
    if action.nargs in (None, "?"):
        return 1
    if isinstance(action.nargs, int):
        return action.nargs
    return None


def split_overrides(parser, argv):
    """``(options, overrides)`` of a command line that ends in ``KEY VALUE`` config overrides.

    The overrides start after ``--`` or at the first word that looks like a config key (``SOLVER.EPOCHS``).
    Before a ``--``, the parser's own options written among the overrides (``SOLVER.EPOCHS 1 --poll 2``)
    are moved back to the options; a value is never taken for an option (``SOLVER.EPOCHS -1`` stays a pair).
    """
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    start = next((i for i, word in enumerate(argv) if OVERRIDE_KEY.match(word)), len(argv))
    options, tail, overrides = argv[:start], argv[start:], []
    known = {string: action for action in parser._actions for string in action.option_strings}
    i = 0
    while i < len(tail):
        word = tail[i]
        if not word.startswith("-"):  # KEY VALUE: the value is taken as written, whatever it looks like
            overrides += tail[i:i + 2]
            i += 2
            continue
        options.append(word)  # an option (an unknown one is argparse's to report)
        i += 1
        action = known.get(word.split("=", 1)[0])
        count = 0 if action is None or "=" in word else _arity(action)
        while i < len(tail) and (count is None or count > 0):
            if count is None and (tail[i].startswith("-") or OVERRIDE_KEY.match(tail[i])):
                break
            options.append(tail[i])
            i += 1
            count = None if count is None else count - 1
    return options, overrides


def one_line(exc):
    """The message of ``exc`` as one line, with a hint for yacs' config errors and for file-system errors."""
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = "{}: {}".format(exc.strerror, exc.filename)
        if exc.errno in _OS_HINTS:
            text += " ({})".format(_OS_HINTS[exc.errno])
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    for start, hint in _HINTS:
        if text.startswith(start) and hint not in text:
            text = "{} ({})".format(text, hint)
    return text


def _yaml_error_text(exc):
    """``<file>, line L, column C: <problem>`` of a yaml parse error, with what to do."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    where = "yaml"
    if mark is not None:
        where = "{}, line {}, column {}".format(mark.name, mark.line + 1, mark.column + 1)
    if "\\t" in problem or "\t" in problem:
        hint = "yaml does not allow tabs: indent with spaces"
    else:
        hint = "fix the yaml there; a config is a mapping of KEY: value lines"
    return "{}: {} ({})".format(where, problem, hint)


def user_error_text(exc):
    """The one line that reports ``exc`` when it is a user's mistake; None when it is a bug."""
    yaml = sys.modules.get("yaml")
    if yaml is not None and isinstance(exc, yaml.YAMLError):
        return _yaml_error_text(exc)
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in OPTIONAL_PACKAGES:
        package = exc.name.split(".")[0]
        return "this needs the optional package {} (pip install 'mdistiller[{}]')".format(
            package, OPTIONAL_PACKAGES[package])
    if isinstance(exc, (ValueError, KeyError, pickle.UnpicklingError)):
        return one_line(exc)
    if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)):
        return one_line(exc)
    if isinstance(exc, OSError) and exc.filename is not None:  # a file the user named: unreadable, disk full, ...
        return one_line(exc)
    return None


def run_main(body, args, prog):
    """``body(args)`` with user errors reported as one line on stderr and ``SystemExit(2)``
    (``args.debug``: the traceback instead)."""
    if getattr(args, "debug", False):
        return body(args)
    try:
        return body(args)
    except Exception as e:
        text = user_error_text(e)
        if text is None:
            raise
        print("{}: error: {}".format(prog, text), file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def first_missing_folder(path):
    """The outermost folder of ``path`` that does not exist yet (what creating ``path`` would add), or None.
    Code that creates folders for a command removes this one when the command fails: a mistake leaves nothing
    behind."""
    path = os.path.abspath(path)
    missing = None
    while not os.path.exists(path):
        missing, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def check_writable(path, what):
    """Raise an ``OSError`` naming ``what`` (e.g. ``"the run folder X (LOG.PREFIX)"``) when the folder ``path``
    cannot be created or written; creates nothing (a command checks this before its long work)."""
    folder = os.path.abspath(path)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise NotADirectoryError(errno.ENOTDIR, "Cannot create {}".format(what), folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "Cannot write {}".format(what), folder)


def load_yaml_mapping(path, what="config"):
    """The mapping that the yaml file ``path`` holds. A syntax error is yaml's (reported with its line and
    column); an empty file, or one whose top level is not a mapping (a plain string, a list), is a
    :class:`UsageError` naming the file."""
    import yaml

    with open(path) as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        found = "is empty" if data is None else "holds {}".format(_YAML_TYPES.get(type(data), type(data).__name__))
        raise UsageError("{} {}: a {} file is a mapping of KEY: value lines".format(path, found, what))
    return data


def console_entry(main):
    """The console script of ``main(argv=None)``: exit code 0 unless ``main`` returns an int exit code
    (``main`` itself returns its result, e.g. the run summary, to Python callers; a console script's
    return value is passed to ``sys.exit``, which would print it and exit with 1)."""

    def entry():
        result = main()
        return result if isinstance(result, int) and not isinstance(result, bool) else 0

    entry.__doc__ = "Console script of {}.{}".format(main.__module__, main.__name__)
    return entry
