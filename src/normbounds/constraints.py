"""One declaration per parameter: its default, both limits and the message, in one place.

In the spirit of scikit-learn's `Interval` constraints: a config field is
declared as `epochs: int = param(60, Interval(int, 1, top=1_000_000))`, and
`check_fields` turns any value outside it into one `ConfigError` that names the
key and what is allowed. `low`/`high` are the mathematical limits of a value;
`top` is a sanity ceiling far above any run this project targets, so a typo
such as `train.epochs: 1000000000000` is refused at once instead of surfacing
minutes later as a MemoryError or a hang.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

from normbounds.errors import ConfigError

_OPEN = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}


def fail(key: str, value: Any, allowed: str) -> None:
    """The one message of a bad parameter value; the error keeps key, value and allowed, so
    a command line can name its own flag instead (cli.py)."""
    err = ConfigError(f"params.yaml: {key} = {value!r} is invalid: {allowed}")
    err.key, err.value, err.allowed = key, value, allowed
    raise err


def require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        fail(key, value, allowed)


@dataclass(frozen=True)
class Interval:
    """low/high: the range (closed on the sides `closed` names); top: the sanity ceiling.
    A tuple-valued field applies it to every element; strings ("auto") are left to the
    field's type."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"
    top: float | None = None
    why: str = ""  # appended to the message, e.g. "(a fraction of the training labels)"

    def _in_range(self, v: float) -> bool:
        left, right = _OPEN[self.closed]
        return ((self.low is None or (v >= self.low if left == "[" else v > self.low))
                and (self.high is None or (v <= self.high if right == "]" else v < self.high)))

    def _range(self) -> str:
        left, right = _OPEN[self.closed]
        if self.high is None:
            return f"{'>=' if left == '[' else '>'} {self.low:g}"
        if self.low is None:
            return f"{'<=' if right == ']' else '<'} {self.high:g}"
        return f"in {left}{self.low:g}, {self.high:g}{right}"

    def explain(self, value: Any) -> str | None:
        """None if `value` satisfies the constraint, else what is allowed."""
        values = value if isinstance(value, tuple) else (value,)
        every = "every value " if isinstance(value, tuple) else ""
        numbers = [v for v in values if not isinstance(v, str)]
        why = f" {self.why}" if self.why else ""
        if not all(self._in_range(v) for v in numbers):
            return f"{every}must be {self._range()}{why}"
        if self.top is not None and any(v > self.top for v in numbers):
            return f"must be at most {self.top:,}{why}"
        return None


def param(default: Any, constraint: Interval | None = None) -> Any:
    """A dataclass field holding its default and its constraint."""
    return dataclasses.field(default=default, metadata={"constraint": constraint})


def check_fields(section: Any, prefix: str) -> None:
    """Every declared constraint of a config section; the first failure is the error."""
    for f in dataclasses.fields(section):
        constraint = f.metadata.get("constraint")
        value = getattr(section, f.name)
        if constraint is None or value is None:
            continue
        allowed = constraint.explain(value)
        if allowed is not None:
            fail(f"{prefix}.{f.name}", list(value) if isinstance(value, tuple) else value,
                 allowed)


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the type hint of its field; return it as the field stores it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        require(isinstance(value, str) and value in args, key, value,
                 "must be one of " + ", ".join(args))
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 2 and typing.get_origin(inner[0]) is Literal:  # Literal[...] | int
            words = typing.get_args(inner[0])
            require(value in words or isinstance(value, int) and not isinstance(value, bool),
                     key, value, f"must be {' or '.join(words)} or an integer")
            return value
        return coerce(value, inner[-1], key)
    if origin is tuple:
        require(isinstance(value, (list, tuple)), key, value,
                f"must be a list of {args[0].__name__}")
        return tuple(coerce(v, args[0], key) for v in value)
    if hint is bool:
        require(isinstance(value, bool), key, value, "must be true or false")
    elif hint is int:
        require(isinstance(value, int) and not isinstance(value, bool), key, value,
                 "must be an integer")
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        require(ok and math.isfinite(value), key, value, "must be a finite number")
        return float(value)
    elif hint is str:
        require(isinstance(value, str), key, value, "must be a string")
    return value


def build(cls: type, raw: Any, prefix: str) -> Any:
    """A (nested) config dataclass from a parsed mapping: unknown keys, and values of the
    wrong type for their field, are one ConfigError each; missing keys take defaults."""
    where = prefix or "the top level"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params.yaml: {where} must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"params.yaml: unknown key {key!r} in {where}; allowed keys: "
                          + ", ".join(names))
    kwargs = {}
    for name in names:
        if name not in raw:
            continue  # the dataclass default applies
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, raw[name], key)
        else:
            kwargs[name] = coerce(raw[name], hint, key)
    return cls(**kwargs)
