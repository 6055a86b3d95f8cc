"""Search spaces: the knobs a method's study samples, declared on its class and overridable from a suite.

A method declares its space beside its ``DEFAULTS``: ``SEARCH_SPACE = {dotted config key: spec}`` (or the
classmethod ``search_space(cfg)`` when it depends on the config, as WKD's parts do). A spec is one of

* ``{"low": a, "high": b}`` (``"log": true`` for a log-uniform draw): a range; the key's type in the config decides
  whether values are floats or integers;
* ``{"factor": f}``: the log-uniform range ``[v / f, v * f]`` around the config's value ``v`` (loss weights, whose
  scale differs by orders of magnitude between datasets and pairs);
* ``{"choices": [...]}``: one of these values.

A suite overrides them per method (``tune: search_space: {<method label or run name>: {key: spec or null}}``; null
takes a key out of the space). Everything is checked against the config before any run starts: an unknown key, a
key of a run-level section, an empty range or a value the key cannot hold is a one-line ``ValueError``.
"""
import math
from collections import OrderedDict, namedtuple

# Keys of these sections define the protocol (data, split, seed, logging, models), not a method's knobs.
PROTOCOL_SECTIONS = ("EXPERIMENT", "DATASET", "DISTILLER", "LOG")
SPEC_FIELDS = {"low", "high", "log", "factor", "choices"}

# kind: "float" | "int" | "categorical"; low/high/log for the ranges, choices for the categorical.
Param = namedtuple("Param", ["key", "kind", "low", "high", "log", "choices"])


def config_value(cfg, key):
    """The value of dotted ``key`` in ``cfg``; KeyError when the config has no such key."""
    node = cfg
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _number(value, what):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("{} must be a number, got {!r}".format(what, value))
    return value


def _fits(choice, current):
    """Whether ``choice`` can replace ``current`` in the config (an int may stand for a float, as in a yaml)."""
    if isinstance(current, bool) or isinstance(choice, bool):
        return isinstance(current, bool) and isinstance(choice, bool)
    if isinstance(current, float):
        return isinstance(choice, (int, float))
    return type(choice) is type(current)


def parse_param(key, spec, cfg, where):
    """The :data:`Param` of one spec, checked against ``cfg`` (``where`` names the space in messages)."""
    try:
        current = config_value(cfg, key)
    except KeyError:
        raise ValueError("{}: unknown config key {} in the search space".format(where, key)) from None
    if key.split(".")[0] in PROTOCOL_SECTIONS:
        raise ValueError("{}: {} belongs to the run's protocol ({} sections), not to a method's search space".format(
            where, key, "/".join(PROTOCOL_SECTIONS)))
    if not isinstance(spec, dict) or not spec:
        raise ValueError("{}: {}: give {{low, high[, log]}}, {{factor}} or {{choices}}, got {!r}".format(
            where, key, spec))
    unknown = set(spec) - SPEC_FIELDS
    if unknown:
        raise ValueError("{}: {}: unknown field(s) {} (valid: {})".format(where, key, ", ".join(sorted(unknown)),
                                                                      ", ".join(sorted(SPEC_FIELDS))))
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) != {"choices"} or not isinstance(choices, (list, tuple)) or not choices:
            raise ValueError("{}: {}: choices must be a non-empty list, alone in its spec".format(where, key))
        for choice in choices:
            if not _fits(choice, current):
                raise ValueError("{}: {}: choice {!r} is not a {} like the config's value {!r}".format(
                    where, key, choice, type(current).__name__, current))
        return Param(key, "categorical", None, None, False, tuple(choices))
    if isinstance(current, bool) or not isinstance(current, (int, float)):
        raise ValueError("{}: {} holds {!r}; a range needs a numeric key (use choices)".format(where, key, current))
    kind = "int" if isinstance(current, int) else "float"
    if "factor" in spec:
        if set(spec) != {"factor"}:
            raise ValueError("{}: {}: factor stands alone (the range is [value / factor, value * factor])".format(
                where, key))
        factor = _number(spec["factor"], "{}: {}: factor".format(where, key))
        if not factor > 1 or not current > 0:
            raise ValueError("{}: {}: empty range: factor {!r} around the config's value {!r} (factor > 1, value > 0)"
                             .format(where, key, factor, current))
        low, high, log = current / factor, current * factor, True
        if kind == "int":
            low, high = max(1, int(math.ceil(low))), int(math.floor(high))
    else:
        if "low" not in spec or "high" not in spec:
            raise ValueError("{}: {}: a range needs low and high".format(where, key))
        low = _number(spec["low"], "{}: {}: low".format(where, key))
        high = _number(spec["high"], "{}: {}: high".format(where, key))
        log = bool(spec.get("log", False))
        if kind == "int" and (low != int(low) or high != int(high)):
            raise ValueError("{}: {} is an integer key; give integer bounds, got [{}, {}]".format(
                where, key, low, high))
        if log and low <= 0:
            raise ValueError("{}: {}: a log range needs low > 0, got {}".format(where, key, low))
    if kind == "int":
        low, high = int(low), int(high)
    else:
        low, high = float(low), float(high)
    if not low < high:
        raise ValueError("{}: {}: empty range [{}, {}] (low must be below high)".format(where, key, low, high))
    return Param(key, kind, low, high, log, None)


def search_space(cfg, overrides=None, where=None):
    """``OrderedDict(key -> Param)``: the space ``cfg``'s method declares (its class's ``search_space(cfg)``), with
    ``overrides`` (``{key: spec or None}``) merged over it, every entry checked against ``cfg``."""
    from ..registry import get_distiller_class

    where = where or "search space of {}".format(cfg.DISTILLER.TYPE)
    specs = OrderedDict(get_distiller_class(cfg.DISTILLER.TYPE).search_space(cfg))
    if overrides is not None and not isinstance(overrides, dict):
        raise ValueError("{}: the suite's override must be a mapping {{key: spec}}, got {!r}".format(where, overrides))
    for key, spec in (overrides or {}).items():
        if spec is None:
            specs.pop(key, None)
        else:
            specs[key] = spec
    return OrderedDict((key, parse_param(key, spec, cfg, where)) for key, spec in specs.items())


def distributions(space):
    """The Optuna distributions of a space (``{key: distribution}``)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = OrderedDict()
    for key, p in space.items():
        if p.kind == "categorical":
            out[key] = CategoricalDistribution(list(p.choices))
        elif p.kind == "int":
            out[key] = IntDistribution(p.low, p.high, log=p.log)
        else:
            out[key] = FloatDistribution(p.low, p.high, log=p.log)
    return out


def describe(space):
    """``KEY [low, high] (log); KEY {a, b}`` for tables."""
    parts = []
    for key, p in space.items():
        if p.kind == "categorical":
            parts.append("{} {{{}}}".format(key, ", ".join(str(c) for c in p.choices)))
        else:
            parts.append("{} [{:g}, {:g}]{}".format(key, p.low, p.high, " log" if p.log else ""))
    return "; ".join(parts)


def apply_point(cfg, point):
    """A frozen copy of ``cfg`` with the sampled values ``point`` (``{key: value}``) merged."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.merge_from_dict(dict(point))
    cfg.freeze()
    return cfg
