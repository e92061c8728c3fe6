"""BoundConfig: the `bound` section of params.yaml, and the options of `compute`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from normbounds.constraints import Interval, build, check_fields, param, require
from normbounds.errors import ConfigError, InputError


@dataclass(frozen=True)
class BoundConfig:
    gamma: float = param(1.0, Interval(float, 0, closed="neither"))  # margin
    # the certificate's margins, fixed in advance; each bound at delta / len(gammas)
    gammas: tuple[float, ...] = param((0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
                                      Interval(float, 0, closed="neither"))
    delta: float = param(0.001, Interval(float, 0, 1, closed="neither"))  # confidence
    # sigma_l the bounds use: certified (upper bound), estimate (converged from below),
    # reshaped (the original study's reshaped-kernel norm); docs/bounds.md
    lipschitz: Literal["certified", "estimate", "reshaped"] = "certified"
    reference: Literal["zero", "init"] = "zero"  # reference weights of Graf and Ledent
    # relative residual at which Lanczos stops (sigma_lower)
    lanczos_tol: float = param(1e-9, Interval(float, 0, 1, closed="neither"))
    # products with A^T A per layer before Lanczos gives up
    lanczos_max_steps: int = param(5000, Interval(int, 1, top=10_000_000))
    # batch of the error and patch-norm passes; auto: sized by the device (batching.py)
    eval_batch_size: Literal["auto"] | int = param("auto", Interval(int, 1, top=10_000_000))

    def check(self) -> None:
        require(0 < len(self.gammas) <= 64, "bound.gammas", list(self.gammas),
                "must list 1 to 64 margins")
        require(all(math.isfinite(g) for g in self.gammas), "bound.gammas", list(self.gammas),
                "every value must be finite")
        increasing = all(a < b for a, b in zip(self.gammas, self.gammas[1:], strict=False))
        require(increasing, "bound.gammas", list(self.gammas),
                "must be strictly increasing (each margin once)")
        require(self.eval_batch_size == "auto" or type(self.eval_batch_size) is int,
                "bound.eval_batch_size", self.eval_batch_size, "must be auto or an integer")
        check_fields(self, "bound")


def bound_config(params: BoundConfig | Mapping | None) -> BoundConfig:
    """The `params` of the API checked by the same declarations as params.yaml's `bound`
    section: a BoundConfig, a mapping of its keys, or None (the defaults). A bad value is
    one InputError naming the key, e.g. "params: gamma = 0.0 is invalid: must be > 0"."""
    try:
        if params is None:
            return BoundConfig()
        if isinstance(params, Mapping):
            params = build(BoundConfig, dict(params), "bound")
        elif not isinstance(params, BoundConfig):
            raise InputError(f"params: expected a BoundConfig or a mapping of its keys, got"
                             f" {type(params).__name__}")
        params.check()
    except ConfigError as err:
        raise InputError(str(err).replace("params.yaml: bound.", "params: ", 1).replace(
            "params.yaml: ", "params: ", 1)) from None
    return params
