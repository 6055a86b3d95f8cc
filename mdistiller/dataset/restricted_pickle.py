"""Read the CIFAR python-format pickles without letting them run code.

The official ``cifar-10-batches-py`` / ``cifar-100-python`` files are Python 2
protocol-2 pickles of a dict of byte strings, lists of ints / byte strings and
one ``uint8`` numpy array. Unpickling them needs exactly three globals::

    numpy.core.multiarray._reconstruct   numpy.ndarray   numpy.dtype

The same data written again by Python 3 / numpy 2 (e.g. by the tests' data
generator) may also use ``numpy._core.multiarray._reconstruct``, protocol-5
``numpy._core.numeric._frombuffer`` (or their ``numpy.core`` spellings), and
``_codecs.encode(text, "latin1")`` for byte strings under protocol 2.

:class:`RestrictedUnpickler` resolves only those names, each to a checked
callable; any other global (``os.system``, ``builtins.eval``, a class with a
``__reduce__``...) raises :class:`UnsafePickleError` before anything is called.
Object-dtype arrays are refused too (they would hold arbitrary objects), and the
loaded value must consist of dicts, lists, tuples, byte/text strings, numbers,
booleans, ``None`` and numeric numpy arrays only.
"""
import io
import pickle

import numpy as np

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "load_restricted"]

_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC_MODULES = ("numpy.core.numeric", "numpy._core.numeric")
_SCALARS = (bool, int, float, complex, str, bytes, bytearray, type(None))


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something a plain data file never needs; nothing was executed."""


def _checked_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise UnsafePickleError("object arrays are not allowed")
    return dtype


def _codecs_encode(text, encoding="utf-8", *rest):
    if rest or not isinstance(text, str) or str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs.encode is only allowed as (str, 'latin1'), the way pickle writes bytes")
    return text.encode("latin1")


def _numpy_function(array, protocol):
    return array.__reduce_ex__(protocol)[0]


_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _checked_dtype,
    ("_codecs", "encode"): _codecs_encode,
}
for _module in _NUMPY_MODULES:
    _ALLOWED[(_module, "_reconstruct")] = _numpy_function(np.zeros(1), 2)
for _module in _NUMERIC_MODULES:
    _ALLOWED[(_module, "_frombuffer")] = _numpy_function(np.zeros(1), 5)


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose globals are limited to what CIFAR's data files reference (see the module doc)."""

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError("it references {}.{}".format(module, name)) from None

    def persistent_load(self, pid):
        raise UnsafePickleError("it uses persistent ids")


def _check_value(obj, depth=0):
    if depth > 50:
        raise UnsafePickleError("it nests deeper than a data file does")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise UnsafePickleError("it holds an object array")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _check_value(k, depth + 1)
            _check_value(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_value(v, depth + 1)
    elif not isinstance(obj, _SCALARS):
        raise UnsafePickleError("it holds a {}".format(type(obj).__name__))


def load_restricted(path, encoding="bytes"):
    """Unpickle the data file ``path`` with :class:`RestrictedUnpickler`.

    ``encoding`` decodes Python 2 byte strings (``"bytes"`` keeps them as bytes).
    Raises :class:`UnsafePickleError` (naming the file) for anything but plain
    data, and :class:`pickle.UnpicklingError` (naming the file) for a damaged file.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
        _check_value(obj)
    except UnsafePickleError as e:
        raise UnsafePickleError(
            "Refusing to read {}: {}, which a dataset file never needs (only dicts, lists, strings, numbers "
            "and numeric numpy arrays are allowed), so the file was not loaded and nothing in it was run. "
            "It is not an original file: delete it and download the dataset again.".format(path, e)
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError,
            UnicodeDecodeError) as e:
        raise pickle.UnpicklingError(
            "Could not read {}: it is damaged or not a python-format pickle ({}: {}). Delete it and download "
            "the dataset again.".format(path, type(e).__name__, e)
        ) from None
    return obj

