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
from dataclasses import dataclass
from typing import Any, Literal

from normbounds.errors import ConfigError

_OPEN = {"both": "[]", "left": "[)", "right": "(]", "neither": "()"}


def fail(key: str, value: Any, allowed: str) -> None:
    """The one message of a bad parameter value."""
    raise ConfigError(f"params.yaml: {key} = {value!r} is invalid: {allowed}")


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
