"""What the command-line entry points share: one line for a user's mistake, a traceback only with ``--debug``.

A mistake in what the user asked for (an unknown method or model, a missing file, an unknown config
key, a value of the wrong type) raises ``KeyError``, ``FileNotFoundError``, ``ValueError`` or
:class:`UsageError` somewhere below the command line. :func:`run_main` turns those into one line
on stderr, ``<prog>: error: <what is wrong> (<what to do>)``, and exit code 2 (argparse's code for a
usage error); ``--debug`` re-raises them with the traceback. Any other exception is a bug and keeps
its traceback. This module imports nothing from mdistiller (every entry point may use it).
"""
import argparse
import sys

EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake in the command line or the files it names; the message says what to do."""


USER_ERRORS = (UsageError, KeyError, FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError)

# yacs' messages, and what to do about them.
_HINTS = (
    ("Non-existent config key", "check its spelling; `mdistiller-train --cfg FILE --print-config` lists the keys"),
    ("Type mismatch", "give a value of the key's type; `mdistiller-train --cfg FILE --print-config` shows the current values"),
)


def add_debug_flag(parser):
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    return parser


def pull_flags(parser, args, words):
    """Move the parser's flags that follow the KEY VALUE overrides (``... SOLVER.EPOCHS 1 --debug``) from
    ``words`` onto ``args``; returns the remaining words."""
    flags = {}
    for action in parser._actions:
        if isinstance(action, (argparse._StoreTrueAction,)):
            for option in action.option_strings:
                flags[option] = action.dest
    rest = []
    for word in words:
        if word in flags:
            setattr(args, flags[word], True)
        else:
            rest.append(word)
    return rest


def one_line(exc):
    """The message of ``exc`` as one line, with a hint for yacs' config errors."""
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]
    elif isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = "{}: {}".format(exc.strerror, exc.filename)
    else:
        text = str(exc) or type(exc).__name__
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    for start, hint in _HINTS:
        if text.startswith(start) and hint not in text:
            text = "{} ({})".format(text, hint)
    return text


def run_main(body, args, prog=None):
    """``body(args)`` with user errors reported as one line on stderr and ``SystemExit(2)``
    (``args.debug``: the traceback instead)."""
    if getattr(args, "debug", False):
        return body(args)
    try:
        return body(args)
    except USER_ERRORS as e:
        prog = prog or argparse.ArgumentParser().prog
        print("{}: error: {}".format(prog, one_line(e)), file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def console_entry(main):
    """The console script of ``main(argv=None)``: exit code 0 unless ``main`` returns an int exit code
    (``main`` itself returns its result, e.g. the run summary, to Python callers; a console script's
    return value is passed to ``sys.exit``, which would print it and exit with 1)."""

    def entry():
        result = main()
        return result if isinstance(result, int) and not isinstance(result, bool) else 0

    entry.__doc__ = "Console script of {}.{}".format(main.__module__, main.__name__)
    return entry
