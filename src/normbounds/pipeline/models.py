"""CONV-L-H: the paper's compositionally sparse network, its dense baseline, and a
user's own network (family `custom`, built by `model.factory`).

L conv layers of H channels (k x k kernels, stride s, no padding, no bias,
ReLU), then flatten and a linear head to C classes (no bias). Every conv layer
is weight-normalised with one scalar gain (W = g V / ||V||_F); the head is not.
Family `fc` (the studies' dense extreme) flattens the input first and uses L
fully connected hidden layers of H units instead, weight-normalised the same way.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from normbounds.errors import ConfigError
from normbounds.pipeline.config import ModelConfig, feature_sides


@dataclass(frozen=True)
class Arch:
    """Everything needed to rebuild a network (saved in each checkpoint)."""

    in_shape: tuple[int, int, int]  # (c0, n0, n0)
    num_classes: int
    depth: int
    width: int
    kernel_size: int = 2
    stride: int = 1
    weight_norm: bool = True
    family: str = "conv"  # "conv", "fc" or "custom"
    factory: str | None = None  # custom: "package.module:function"

    def to_dict(self) -> dict:
        return {**asdict(self), "in_shape": list(self.in_shape)}

    @classmethod
    def from_dict(cls, raw: dict) -> Arch:
        return cls(**{**raw, "in_shape": tuple(raw["in_shape"])})


class GridNet(nn.Module):
    """The network of a grid entry: CONV-L-H (family conv) or FC-L-H (family fc). The
    bounds read it like any other model (measure/network.py)."""

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        self.arch = arch
        c0, n0, _ = arch.in_shape
        self.dense = arch.family == "fc"
        # n_l = floor((n_{l-1} - k) / s) + 1; raises ConfigError if a map vanishes
        self.sides = [n0] + [1] * arch.depth if self.dense else feature_sides(
            n0, arch.depth, arch.kernel_size, arch.stride)
        # the hidden layers, conv or dense; the name is in every saved state dict
        # ("convs.0.parametrizations..."), so it stays although fc layers are dense
        self.convs = nn.ModuleList()
        for layer in range(arch.depth):
            if self.dense:
                fan_in = c0 * n0 * n0 if layer == 0 else arch.width
                hidden = nn.Linear(fan_in, arch.width, bias=False)
            else:
                hidden = nn.Conv2d(c0 if layer == 0 else arch.width, arch.width,
                                   arch.kernel_size, stride=arch.stride, padding=0, bias=False)
            if arch.weight_norm:
                hidden = weight_norm(hidden, dim=None)  # scalar gain over the whole weight
            self.convs.append(hidden)
        self.head = nn.Linear(arch.width * self.sides[-1] ** 2, arch.num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense:
            x = x.flatten(1)  # (B, c n n)
        for conv in self.convs:
            x = torch.relu(conv(x))  # (B, H, n_l, n_l)
        return self.head(x.flatten(1))  # (B, C)

    def gains(self) -> list[float]:
        """The weight-norm gains g_l of the conv layers (empty without weight norm)."""
        if not self.arch.weight_norm:
            return []
        return [conv.parametrizations.weight.original0.item() for conv in self.convs]


def arch_for(entry_depth: int, entry_width: int, model_cfg: ModelConfig, stats: dict) -> Arch:
    """The Arch of a grid entry on the prepared data (shape and classes from stats.json)."""
    return Arch(in_shape=tuple(stats["input_shape"]), num_classes=stats["num_classes"],
                depth=entry_depth, width=entry_width, kernel_size=model_cfg.kernel_size,
                stride=model_cfg.stride, weight_norm=model_cfg.weight_norm,
                family=model_cfg.family, factory=model_cfg.factory)


def load_factory(spec: str, key: str = "params.yaml: model.factory") -> Callable[..., nn.Module]:
    """The function named by `spec` ("package.module:function"), imported with the
    current folder (the pipeline's root) first on the path. `key` names it in errors."""
    module_name, _, name = spec.partition(":")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # whatever the user's module raises on import
        raise ConfigError(f"{key} = {spec!r}: module {module_name!r} does not import"
                          f" ({type(err).__name__}: {err})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"{key} = {spec!r}: {module_name} has no function {name!r}")
    return fn


def factory_file(spec: str) -> Path | None:
    """The source file of a factory's module (part of the training fingerprint)."""
    module = sys.modules.get(spec.partition(":")[0])
    path = getattr(module, "__file__", None)
    return Path(path) if path else None


def _custom(arch: Arch) -> nn.Module:
    model = load_factory(arch.factory)(in_shape=arch.in_shape, num_classes=arch.num_classes,
                                       depth=arch.depth, width=arch.width)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"params.yaml: model.factory = {arch.factory!r} returned a"
                          f" {type(model).__name__}, not an nn.Module")
    return model


FAMILIES: dict[str, Callable[[Arch], nn.Module]] = {"conv": GridNet, "fc": GridNet,
                                                    "custom": _custom}


def build(arch: Arch) -> nn.Module:
    """The network of `arch` (freshly initialised from torch's global generator)."""
    return FAMILIES[arch.family](arch)
