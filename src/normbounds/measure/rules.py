"""The ONE table of operations the bounds read, and the rules both model readers share.

`RULES` lists every operation by name: the nn.Module types, functions or method
names (torch.fx, graph.py) and aten kinds (TorchScript, torchscript.py) that
are it, and either None (covered: each reader has an adapter of that name) or
the reason it is refused. `COVERED`, the messages, the dispatch tables of both
readers and the docs' list all come from it. A new layer kind is one row here
plus one adapter per reader (tests/measure/test_network.py checks that every covered
row has them).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from normbounds.errors import UnsupportedLayerError


@dataclass(frozen=True)
class Op:
    """One operation on the data path, per sample (shapes without the batch)."""

    kind: str  # "conv" (conv-like), "dense", "flatten" or "relu"
    where: str  # the module path or call, for messages
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    weight: torch.Tensor | None = None  # float64; conv (H, c, k, k), dense (H, d)
    bias: torch.Tensor | None = None  # float64 (H,)
    stride: int = 1
    padding: int = 0


class Refused(Exception):
    """Why one operation is not covered (collected, then reported all at once)."""


@dataclass(frozen=True)
class Rule:
    name: str  # as COVERED and the messages list it
    modules: tuple[type, ...] = ()
    functions: tuple = ()  # torch / F functions, and method names as strings (fx)
    aten: tuple[str, ...] = ()  # TorchScript node kinds
    refused: str | None = None  # None: covered; else why it is refused


_NONLINEAR_MODULES = (nn.Sigmoid, nn.Tanh, nn.GELU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Softmax,
                      nn.LogSoftmax, nn.Hardtanh, nn.ReLU6, nn.PReLU, nn.Softplus, nn.Mish,
                      nn.SELU)
_NONLINEAR_FUNCTIONS = (torch.sigmoid, torch.tanh, F.sigmoid, F.tanh, F.gelu, F.leaky_relu,
                        F.elu, F.silu, F.softmax, F.log_softmax, torch.softmax,
                        torch.log_softmax, F.softplus, F.relu6, F.hardtanh, F.mish, F.selu,
                        "sigmoid", "tanh", "softmax", "log_softmax")
SKIP = "a residual or skip connection"

RULES: tuple[Rule, ...] = (
    Rule("Conv2d", (nn.Conv2d,), aten=("aten::conv2d", "aten::_convolution")),
    Rule("Linear", (nn.Linear,), aten=("aten::linear",)),
    Rule("AvgPool2d", (nn.AvgPool2d,), (F.avg_pool2d,), ("aten::avg_pool2d",)),
    Rule("AdaptiveAvgPool2d", (nn.AdaptiveAvgPool2d,), (F.adaptive_avg_pool2d,),
         ("aten::adaptive_avg_pool2d",)),
    Rule("BatchNorm1d/2d", (nn.BatchNorm2d, nn.BatchNorm1d), aten=("aten::batch_norm",)),
    Rule("Flatten", (nn.Flatten,), (torch.flatten, "flatten", "view", "reshape"),
         ("aten::flatten",)),
    Rule("Dropout", (nn.Dropout, nn.Dropout2d), (F.dropout,), ("aten::dropout",)),
    Rule("Identity", (nn.Identity,), ("contiguous",), ("aten::contiguous",)),
    Rule("ReLU", (nn.ReLU,), (torch.relu, F.relu, "relu"), ("aten::relu", "aten::relu_")),
    Rule("MaxPool2d", (nn.MaxPool2d, nn.AdaptiveMaxPool2d),
         (F.max_pool2d, torch.max_pool2d, F.adaptive_max_pool2d),
         ("aten::max_pool2d", "aten::adaptive_max_pool2d"), refused="max pooling"),
    Rule("attention", (nn.MultiheadAttention,), (F.scaled_dot_product_attention,),
         refused="attention"),
    Rule("Conv1d", (nn.Conv1d,), refused="a 1-d convolution"),
    Rule("Conv3d", (nn.Conv3d,), refused="a 3-d convolution"),
    Rule("ConvTranspose2d", (nn.ConvTranspose2d,), refused="a transposed convolution"),
    Rule("LayerNorm", (nn.LayerNorm,),
         refused="layer norm (not linear: it divides by the sample's own statistics)"),
    Rule("GroupNorm", (nn.GroupNorm,), refused="group norm (not linear)"),
    Rule("add", (), (operator.add, torch.add, operator.iadd), ("aten::add", "aten::add_"),
         refused=SKIP),
    Rule("cat", (), (torch.cat,), ("aten::cat",), refused="a concatenation of branches"),
    Rule("nonlinear", _NONLINEAR_MODULES, _NONLINEAR_FUNCTIONS,
         refused="a nonlinearity other than ReLU"),
)
COVERED = ", ".join(r.name for r in RULES if r.refused is None)


def dispatch(adapters: dict, field: str) -> dict:
    """A reader's table: every key of RULES' `field` -> the reader's adapter for a covered
    rule, or the reason string for a refused one."""
    table = {}
    for rule in RULES:
        for key in getattr(rule, field):
            table[key] = adapters[rule.name] if rule.refused is None else rule.refused
    return table


# what to do instead, by refusal reason (a reason not listed here explains itself)
_NO_BOUND_YET = "no bound here covers it yet (the theorem is a chain of linear maps and ReLUs)"
ADVICE = {
    "max pooling": "use AvgPool2d instead, which the bounds cover",
    SKIP: _NO_BOUND_YET,
    "a concatenation of branches": _NO_BOUND_YET,
    "attention": _NO_BOUND_YET,
    "a nonlinearity other than ReLU": "use ReLU, the one nonlinearity the theorem covers",
    "layer norm (not linear: it divides by the sample's own statistics)":
        "use BatchNorm2d, which is linear in eval mode",
    "group norm (not linear)": "use BatchNorm2d, which is linear in eval mode",
    "a 1-d convolution": "the bounds cover Conv2d on images",
    "a 3-d convolution": "the bounds cover Conv2d on images",
    "a transposed convolution": "the bounds cover Conv2d on images",
}
# reasons that carry their own values: advice by how they start
STARTS = (
    ("padding_mode", "use zero padding (padding_mode='zeros')"),
    ("padding 'same'", "use an odd kernel, or pad explicitly with an integer padding"),
    ("padding ", "use an integer padding"),
    ("non-square", "use square kernels, strides and pooling windows"),
    ("grouped or dilated", "use groups=1 and dilation=1"),
    ("average pooling with", "use AvgPool2d without padding, ceil_mode or divisor_override"),
    ("adaptive pooling", "use an output side that divides the input side"),
    ("batch norm", "call model.eval() first: batch norm then uses its running statistics"),
    ("dropout", "call model.eval() first: dropout is then the identity"),
    ("reshapes", "flatten only: nn.Flatten or torch.flatten(x, 1)"),
    ("flatten of", "flatten only: nn.Flatten or torch.flatten(x, 1)"),
    ("combines", _NO_BOUND_YET),
    ("not covered", "rewrite it with the covered pieces"),
)
BRANCH = "a branch point (a value used twice, where a skip connection starts)"
ADVICE[BRANCH] = _NO_BOUND_YET
_FEEDS = re.compile(r"^its (output|value) feeds (\d+|several) operations \(a skip connection\)$")
SHOWN = 3  # node names shown per reason


def not_covered(what: str, problems: list[str]) -> UnsupportedLayerError:
    """The one error of a reader: each distinct reason once, with how many places have it,
    the first few of them, and what to do instead.

    problems: "<place>: <reason>" (or a reason alone), in graph order."""
    places: dict[str, list[str]] = {}
    for problem in dict.fromkeys(problems):
        where, sep, why = problem.partition(": ")
        where, why = (where, why) if sep else ("", problem)
        if _FEEDS.match(why):
            why = BRANCH
        places.setdefault(why, []).append(where)
    parts = []
    for why, found in places.items():
        named = [w for w in found if w]
        shown = ", ".join(named[:SHOWN]) + (", ..." if len(named) > SHOWN else "")
        count = f"{len(found)} place{'s' if len(found) > 1 else ''}: {shown}" if named else ""
        advice = ADVICE.get(why) or next((a for start, a in STARTS if why.startswith(start)),
                                         _NO_BOUND_YET)
        parts.append(why + (f" ({count})" if count else "") + (f" - {advice}" if advice else ""))
    return UnsupportedLayerError(f"{what} is not covered by the bounds (docs/bounds.md,"
                                 " \"Networks beyond CONV-L-H\"): " + "; ".join(parts))


def combines(count: int) -> Refused:
    return Refused(f"combines {count} tensors ({SKIP})")


def pair(value, name: str) -> int:
    """A square size from an int or a pair; anything else is refused."""
    if isinstance(value, int):
        return value
    if isinstance(value, tuple | list) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    raise Refused(f"non-square {name} {value}")


def plain_conv(groups: int, dilation) -> None:
    """Refuse what Conv2d can be but the theorem's conv layer is not."""
    if groups != 1 or pair(dilation, "dilation") != 1:
        raise Refused(f"grouped or dilated convolution (groups {groups}, dilation {dilation})")


def pool_weight(channels: int, size: int) -> torch.Tensor:
    """Average pooling as a conv: identity across channels, 1/size^2 at every tap."""
    eye = torch.eye(channels, dtype=torch.float64)[:, :, None, None]
    return eye.expand(channels, channels, size, size) / size ** 2


def avg_pool(kernel, stride, padding, ceil_mode, divisor, shape_in, shape_out, where) -> Op:
    k = pair(kernel, "pooling kernel")
    s = k if stride is None or stride == [] else pair(stride, "pooling stride")
    if pair(padding, "pooling padding") != 0 or ceil_mode or divisor is not None:
        raise Refused("average pooling with padding, ceil_mode or divisor_override")
    return Op("conv", where, shape_in, shape_out, pool_weight(shape_in[0], k), None, s)


def adaptive_avg(shape_in, shape_out, where) -> Op:
    n, n_out = shape_in[-1], shape_out[-1]
    if len(shape_in) != 3 or shape_in[1] != n or n % n_out:
        raise Refused(f"adaptive pooling from {shape_in} to {shape_out} (the output side must"
                      " divide the input side)")
    return Op("conv", where, shape_in, shape_out, pool_weight(shape_in[0], n // n_out),
              None, n // n_out)


def batch_norm(weight, bias, mean, var, eps: float, shape, where: str) -> Op:
    """Batch norm with running statistics: x -> scale x + shift per channel, as a 1 x 1
    conv with a diagonal kernel (on maps) or a diagonal dense layer. weight/bias: None
    when not affine."""
    if mean is None:
        raise Refused("batch norm without running statistics (it normalises by the batch)")
    scale = weight.double() if weight is not None else torch.ones_like(var, dtype=torch.float64)
    scale = scale / torch.sqrt(var.double() + eps)
    shift = -mean.double() * scale
    if bias is not None:
        shift = shift + bias.double()
    if len(shape) == 3:
        return Op("conv", where, shape, shape, torch.diag(scale)[:, :, None, None], shift)
    return Op("dense", where, shape, shape, torch.diag(scale), shift)


def reshape(shape_in, shape_out, where) -> Op | None:
    if shape_in == shape_out:
        return None
    if len(shape_out) == 1 and shape_out[0] == torch.Size(shape_in).numel():
        return Op("flatten", where, shape_in, shape_out)
    raise Refused(f"reshapes {shape_in} to {shape_out} (only flattening is covered)")


def relu(shape_in, shape_out, where) -> Op:
    return Op("relu", where, shape_in, shape_out)
