"""The weight layers of a network as the bounds see them, and their norms.

`describe` turns a network into a list of `LayerSpec`s (effective weight in
float64, input shape, kernel, stride) and refuses every construct that the
spec's formulas do not cover: biases, padding, dilation, groups, pooling,
normalisation layers and anything else unknown. A silently wrong number is
worse than an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from normbounds.errors import UnsupportedLayerError


@dataclass(frozen=True)
class LayerSpec:
    """One weight layer: a k x k conv ('conv'), a dense hidden layer ('fc') or the head.

    The spec reads a dense hidden layer as a single node: kernel 1 and stride 1
    give pred = deg = 1, and it is applied at one position.
    """

    index: int  # 1-based, as in the spec
    kind: str  # "conv", "fc" or "head"
    weight: torch.Tensor  # float64; conv (H, c, k, k), fc (H, d), head (C, d)
    in_shape: tuple[int, ...]  # conv (c, n, n); fc and head (d,)
    kernel: int = 1
    stride: int = 1
    padding: int = 0

    @property
    def out_side(self) -> int:
        """n_l = floor((n_{l-1} + 2 p - k) / s) + 1 for a conv layer, 1 for the head."""
        if self.kind != "conv":
            return 1
        return (self.in_shape[1] + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def side_in(self) -> int:
        """d_l of Ledent's bound: the spatial side of the input (1 for the head)."""
        return self.in_shape[1] if self.kind == "conv" else 1

    @property
    def positions(self) -> int:
        """O_l: where the layer is applied (n_l^2 for a conv, 1 for the head)."""
        return self.out_side ** 2

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def pred(self) -> int:
        """pred_l = k^2, the spatial size of a patch."""
        return self.kernel ** 2

    @property
    def deg(self) -> int:
        """deg_l = ceil(k / s)^2, how many patches can contain one input position."""
        return math.ceil(self.kernel / self.stride) ** 2

    @property
    def n_inputs(self) -> int:
        return math.prod(self.in_shape)


_ALLOWED = (nn.Conv2d, nn.Linear, nn.ReLU, nn.Flatten, nn.ModuleList, nn.Sequential,
            nn.ModuleDict, parametrize.ParametrizationList)


def _check_modules(model: nn.Module) -> None:
    for name, module in model.named_modules():
        if module is model or isinstance(module, _ALLOWED):
            continue
        if type(module).__name__ == "_WeightNorm":  # weight_norm's parametrization
            continue
        raise UnsupportedLayerError(
            f"layer {name!r} ({type(module).__name__}) is not covered by the bounds: the spec"
            " covers conv layers (no padding, no bias), ReLU and a linear head only")


def _conv_spec(index: int, conv: nn.Module, in_shape: tuple[int, int, int]) -> LayerSpec:
    where = f"weight layer {index} ({type(conv).__name__})"
    if conv.bias is not None:
        raise UnsupportedLayerError(f"{where} has a bias, which the bounds do not cover")
    if conv.padding not in ((0, 0), "valid") or conv.dilation != (1, 1) or conv.groups != 1:
        raise UnsupportedLayerError(f"{where} uses padding {conv.padding}, dilation"
                                    f" {conv.dilation} or groups {conv.groups}: the deg/pred"
                                    " counts of the spec need padding 0, dilation 1, groups 1")
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    if kh != kw or sh != sw:
        raise UnsupportedLayerError(f"{where} has a non-square kernel or stride")
    if in_shape[0] != conv.in_channels or in_shape[1] < kh:
        raise UnsupportedLayerError(f"{where} cannot take an input of shape {in_shape}")
    weight = conv.weight.detach().to(torch.float64)
    return LayerSpec(index, "conv", weight, in_shape, kh, sh)


def _fc_spec(index: int, layer: nn.Linear, in_shape: tuple[int, ...]) -> LayerSpec:
    if layer.bias is not None:
        raise UnsupportedLayerError(f"weight layer {index} (Linear) has a bias, which the"
                                    " bounds do not cover")
    if layer.in_features != math.prod(in_shape):
        raise UnsupportedLayerError(f"weight layer {index} takes {layer.in_features} inputs"
                                    f" but receives {math.prod(in_shape)}")
    return LayerSpec(index, "fc", layer.weight.detach().to(torch.float64),
                     (layer.in_features,))


def describe(model: nn.Module, in_shape: tuple[int, int, int] | None = None) -> list[LayerSpec]:
    """The weight layers of `model` (conv layers, then a linear head) as LayerSpecs.

    `model.weight_layers()` gives the layers in forward order; the input shape
    defaults to `model.arch.in_shape`.
    """
    _check_modules(model)
    if in_shape is None:
        in_shape = tuple(model.arch.in_shape)
    *hidden, head = model.weight_layers()
    specs, shape = [], tuple(in_shape)
    for i, layer in enumerate(hidden, start=1):
        if isinstance(layer, nn.Conv2d) and len(shape) == 3:
            spec = _conv_spec(i, layer, shape)
            shape = (spec.out_channels, spec.out_side, spec.out_side)
        elif isinstance(layer, nn.Linear):
            spec = _fc_spec(i, layer, shape)
            shape = (layer.out_features,)
        else:
            raise UnsupportedLayerError(f"weight layer {i} is a {type(layer).__name__} on an"
                                        f" input of shape {shape}: only Conv2d layers, then"
                                        " dense (Linear) layers, may precede the head")
        specs.append(spec)
    if not isinstance(head, nn.Linear) or head.bias is not None:
        raise UnsupportedLayerError("the last weight layer must be an nn.Linear without bias")
    if head.in_features != math.prod(shape):
        raise UnsupportedLayerError(f"the head takes {head.in_features} inputs but the last"
                                    f" feature map has {math.prod(shape)}")
    specs.append(LayerSpec(len(hidden) + 1, "head", head.weight.detach().to(torch.float64),
                           (head.in_features,)))
    return specs


def frobenius(w: torch.Tensor) -> float:
    """||W||_F of the whole tensor."""
    return torch.linalg.vector_norm(w).item()


def l21(w: torch.Tensor) -> float:
    """||W||_{2,1}: kernel (H, c, k, k): sum over (o, row, col) of the l2 norm across
    input channels; head (C, d): sum of the row norms."""
    return torch.linalg.vector_norm(w, dim=1).sum().item()


def filter_norm_sum(w: torch.Tensor, kind: str) -> float:
    """Ledent's a_l: sum over output filters of ||W[o]||_F (fc and head: ||W||_F)."""
    if kind != "conv":
        return frobenius(w)
    return torch.linalg.vector_norm(w.flatten(1), dim=1).sum().item()


def max_patch_norm_sq(x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
    """Largest squared l2 norm of an input patch of the layer over a batch.

    Conv: the c x k x k window at every position the layer is applied, x (B, c, n, n);
    fc and head: the whole flattened input, x (B, d). Returns a 0-dim tensor.
    """
    if spec.kind != "conv":
        return x.pow(2).sum(dim=1).max()
    pixel_sq = x.pow(2).sum(dim=1, keepdim=True)  # (B, 1, n, n)
    box = torch.ones(1, 1, spec.kernel, spec.kernel, dtype=x.dtype, device=x.device)
    return F.conv2d(pixel_sq, box, stride=spec.stride).max()  # window sums (B, 1, n_l, n_l)
