"""Refuse, before any training, a custom network that the bounds cannot read.

The prepare stage calls this: a train stage does not import the bound code, so
editing a bound never invalidates a training run (its fingerprint and DVC deps
are the modules training imports, `imports.py`).
"""

from __future__ import annotations

from normbounds.measure.network import read_network
from normbounds.pipeline.config import Config
from normbounds.pipeline.models import arch_for, build


def refuse_unreadable(cfg: Config, stats: dict) -> None:
    """Build every (depth, width) of the grid of a custom family and read it
    (measure.read_network raises UnsupportedLayerError naming each unsupported op).
    conv and fc networks are read by construction (tests/pipeline/test_models.py)."""
    if cfg.model.family != "custom":
        return
    for depth in cfg.grid.depths:
        for width in cfg.grid.widths:
            arch = arch_for(depth, width, cfg.model, stats)
            read_network(build(arch), arch.in_shape)
