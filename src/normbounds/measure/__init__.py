"""The bounds of ANY nn.Module: the public API, importing nothing of the DVC pipeline.

    from normbounds.measure import assess, compute, read_network, BoundConfig
    row = assess(model, train_x, train_y)       # errors, every bound, the certificate
    values = compute(model, train_x)            # every bound and its ingredients

`read_network` turns a model (torch.fx, or a TorchScript file) into the theorem's
layer list; `describe` prints it. The names load on first use (PEP 562), so the
pipeline can import `measure.options` or `measure.statistics` without loading the
bound code: a training run's fingerprint covers exactly what training imports.
"""

from __future__ import annotations

import importlib
from typing import Any

_FACE = {  # public name -> the module of this package that defines it
    "assess": "assessment",
    "compute": "bounds",
    "BoundConfig": "options",
    "BOUNDS": "formulas",
    "certificate": "certificates",
    "held_out_bound": "certificates",
    "statuses": "formulas",
    "read_network": "network",
    "describe": "network",
    "eval_mode": "network",
    "Network": "network",
    "LayerSpec": "layers",
    "data_statistics": "statistics",
}
__all__ = sorted(_FACE)


def __getattr__(name: str) -> Any:
    if name not in _FACE:
        raise AttributeError(f"module 'normbounds.measure' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"normbounds.measure.{_FACE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
