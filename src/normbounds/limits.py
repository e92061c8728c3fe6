"""Upper limits on params.yaml values, checked when params are loaded.

A typo such as `train.epochs: 1000000000000` or `grid.widths: [1000000000]`
would otherwise surface minutes later as a MemoryError or a hang. The limits
are far above any run this project targets (the paper: CONV-3-1000, 500
epochs, 14 M weights), and the network size is estimated from the
architecture before anything is allocated.
"""

from __future__ import annotations

from typing import Any

from normbounds.errors import ConfigError

SEED_MAX = 2**32 - 1  # NumPy's seeds are 32-bit
MAX_WEIGHTS = 2_000_000_000  # 8 GB of float32 weights, before gradients and momentum
LIMITS: dict[str, int] = {  # key -> largest allowed value
    "base.threads": 1_024,
    "train.epochs": 1_000_000,
    "train.batch_size": 10_000_000,
    "train.save_every": 1_000_000,
    "grid.depths": 1_000,
    "grid.widths": 1_000_000,
    "bound.eval_batch_size": 10_000_000,
    "bound.lanczos_max_steps": 10_000_000,
}


def _too_big(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"params.yaml: {key} = {value!r} is invalid: {allowed}")


def check_limits(cfg: Any) -> None:
    """Refuse values beyond LIMITS, seeds beyond 32 bits and networks too large to hold."""
    for key, top in LIMITS.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        values = value if isinstance(value, tuple) else (value,)
        if any(not isinstance(v, str) and v > top for v in values):  # str: "auto"
            raise _too_big(key, list(value) if isinstance(value, tuple) else value,
                           f"must be at most {top:,}")
    for key, values in (("grid.seeds", cfg.grid.seeds), ("data.seed", (cfg.data.seed,))):
        if any(v > SEED_MAX for v in values):
            raise _too_big(key, list(values) if key == "grid.seeds" else values[0],
                           f"seeds must be at most 2^32 - 1 = {SEED_MAX}")
    for depth in cfg.grid.depths:
        for width in cfg.grid.widths:
            count = weight_count(cfg, depth, width)
            if count > MAX_WEIGHTS:
                raise _too_big("grid.widths", list(cfg.grid.widths),
                               f"depth {depth} at width {width} would have {count:.3g} weights"
                               f" (about {16 * count / 1e9:.3g} GB for weights, gradients,"
                               f" momentum and a checkpoint); at most {MAX_WEIGHTS:.3g} weights")


def weight_count(cfg: Any, depth: int, width: int) -> int:
    """The number of weights of the grid entry's network (exact for conv and fc; 0 when
    unknown before loading: a custom family, or a data set of unknown shape)."""
    from normbounds.config import feature_sides
    from normbounds.datasets import DATASETS

    info = DATASETS[cfg.data.dataset]
    if info.shape is None or cfg.model.family == "custom":
        return 0
    (channels, side, _), classes = info.shape, info.classes
    if cfg.model.family == "fc":
        return channels * side * side * width + (depth - 1) * width * width + width * classes
    k = cfg.model.kernel_size
    last = feature_sides(side, depth, k, cfg.model.stride)[-1]
    return (channels * width + (depth - 1) * width * width) * k * k + width * last * last * classes
