"""Any `nn.Module` -> the chain of operations the bounds can read, by torch.fx.

`trace` runs `torch.fx.symbolic_trace` (which also sees functional calls such as
`F.max_pool2d` that forward hooks miss) and one forward pass for the real
shapes, then follows the data from the input to the logits. Every operation
on that path is looked up in the tables below and becomes an `Op`: a linear
map (conv-like: Conv2d, average pooling, BatchNorm2d; dense: Linear,
BatchNorm1d), a flatten, or a ReLU; identities (dropout in eval mode,
nn.Identity) vanish. Everything else, and any branching of the path (a
residual or skip connection), is collected and refused with ONE
`UnsupportedLayerError` that lists every offending module or call.

The model is read in eval mode: batch norm uses its running statistics and
dropout is the identity, which is the function a trained network computes.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

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


@dataclass
class Traced:
    """The data path of a traced model: its ops in order and the fx nodes they read."""

    module: fx.GraphModule | None  # None for a TorchScript model
    ops: list[Op]
    inputs: list[fx.Node]  # the node whose output each op reads


def _f64(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to(torch.float64)


def _pair(value, name: str) -> int:
    """A square size from an int or a pair; anything else is refused."""
    if isinstance(value, int):
        return value
    if isinstance(value, tuple | list) and len(value) == 2 and value[0] == value[1]:
        return int(value[0])
    raise Refused(f"non-square {name} {value}")


def _conv(m: nn.Conv2d, shape_in, shape_out, where) -> Op:
    if m.groups != 1 or _pair(m.dilation, "dilation") != 1:
        raise Refused(f"grouped or dilated convolution (groups {m.groups}, dilation"
                      f" {m.dilation})")
    if m.padding_mode != "zeros":
        raise Refused(f"padding_mode {m.padding_mode!r} (only zero padding is covered)")
    k, s = _pair(m.kernel_size, "kernel"), _pair(m.stride, "stride")
    pad = m.padding
    if pad == "same":
        if k % 2 == 0 or s != 1:
            raise Refused(f"padding 'same' with kernel {k}, stride {s} pads unevenly")
        pad = (k - 1) // 2
    pad = 0 if pad == "valid" else _pair(pad, "padding")
    return Op("conv", where, shape_in, shape_out, _f64(m.weight), _f64(m.bias), s, pad)


def _pool_weight(channels: int, size: int) -> torch.Tensor:
    """Average pooling as a conv: identity across channels, 1/size^2 at every tap."""
    eye = torch.eye(channels, dtype=torch.float64)[:, :, None, None]
    return eye.expand(channels, channels, size, size) / size ** 2


def _avg_pool(kernel, stride, padding, ceil_mode, divisor, shape_in, shape_out, where) -> Op:
    k = _pair(kernel, "pooling kernel")
    s = k if stride is None or stride == [] else _pair(stride, "pooling stride")
    if _pair(padding, "pooling padding") != 0 or ceil_mode or divisor is not None:
        raise Refused("average pooling with padding, ceil_mode or divisor_override")
    return Op("conv", where, shape_in, shape_out, _pool_weight(shape_in[0], k), None, s)


def _adaptive_avg(shape_in, shape_out, where) -> Op:
    n, n_out = shape_in[-1], shape_out[-1]
    if len(shape_in) != 3 or shape_in[1] != n or n % n_out:
        raise Refused(f"adaptive pooling from {shape_in} to {shape_out} (the output side must"
                      " divide the input side)")
    return Op("conv", where, shape_in, shape_out, _pool_weight(shape_in[0], n // n_out),
              None, n // n_out)


def _batch_norm(m: nn.modules.batchnorm._BatchNorm, shape_in, shape_out, where) -> Op:
    if m.running_mean is None:
        raise Refused("batch norm without running statistics (it normalises by the batch)")
    scale = _f64(m.weight) if m.affine else torch.ones(m.num_features, dtype=torch.float64)
    scale = scale / torch.sqrt(_f64(m.running_var) + m.eps)
    shift = -_f64(m.running_mean) * scale
    if m.affine:
        shift = shift + _f64(m.bias)
    if len(shape_in) == 3:  # BatchNorm2d: a 1 x 1 conv with a diagonal kernel
        return Op("conv", where, shape_in, shape_out, torch.diag(scale)[:, :, None, None], shift)
    return Op("dense", where, shape_in, shape_out, torch.diag(scale), shift)


def _reshape(shape_in, shape_out, where) -> Op | None:
    if shape_in == shape_out:
        return None
    if len(shape_out) == 1 and shape_out[0] == torch.Size(shape_in).numel():
        return Op("flatten", where, shape_in, shape_out)
    raise Refused(f"reshapes {shape_in} to {shape_out} (only flattening is covered)")


def _dropout(node: fx.Node) -> None:
    training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
    if training:
        raise Refused("dropout with training=True, random at evaluation (pass"
                      " training=self.training)")
    return None


def _relu(shape_in, shape_out, where) -> Op:
    return Op("relu", where, shape_in, shape_out)


def _identity(shape_in, shape_out, where) -> None:
    return None


_NONLINEAR = "a nonlinearity other than ReLU"
# module type -> (module, in, out, where) -> Op | None; or the reason it is refused
MODULES: dict[type, Callable | str] = {
    nn.Conv2d: _conv,
    nn.Linear: lambda m, i, o, w: Op("dense", w, i, o, _f64(m.weight), _f64(m.bias)),
    nn.AvgPool2d: lambda m, i, o, w: _avg_pool(m.kernel_size, m.stride, m.padding,
                                               m.ceil_mode, m.divisor_override, i, o, w),
    nn.AdaptiveAvgPool2d: lambda m, i, o, w: _adaptive_avg(i, o, w),
    nn.BatchNorm2d: _batch_norm, nn.BatchNorm1d: _batch_norm,
    nn.ReLU: lambda m, i, o, w: _relu(i, o, w),
    nn.Flatten: lambda m, i, o, w: _reshape(i, o, w),
    nn.Identity: lambda m, i, o, w: None,
    nn.Dropout: lambda m, i, o, w: None, nn.Dropout2d: lambda m, i, o, w: None,  # eval mode
    nn.MaxPool2d: "max pooling", nn.AdaptiveMaxPool2d: "max pooling",
    nn.MultiheadAttention: "attention",
    nn.Conv1d: "a 1-d convolution", nn.Conv3d: "a 3-d convolution",
    nn.ConvTranspose2d: "a transposed convolution",
    nn.LayerNorm: "layer norm (not linear: it divides by the sample's own statistics)",
    nn.GroupNorm: "group norm (not linear)",
}
for _m in (nn.Sigmoid, nn.Tanh, nn.GELU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.Softmax,
           nn.LogSoftmax, nn.Hardtanh, nn.ReLU6, nn.PReLU, nn.Softplus, nn.Mish, nn.SELU):
    MODULES[_m] = _NONLINEAR

# function or method name -> (node, in, out, where) -> Op | None; or the reason it is refused
FUNCTIONS: dict[Callable | str, Callable | str] = {
    torch.relu: lambda n, i, o, w: _relu(i, o, w), F.relu: lambda n, i, o, w: _relu(i, o, w),
    "relu": lambda n, i, o, w: _relu(i, o, w),
    torch.flatten: lambda n, i, o, w: _reshape(i, o, w),
    "flatten": lambda n, i, o, w: _reshape(i, o, w), "view": lambda n, i, o, w: _reshape(i, o, w),
    "reshape": lambda n, i, o, w: _reshape(i, o, w),
    "contiguous": _identity, F.dropout: lambda n, i, o, w: _dropout(n),
    F.avg_pool2d: lambda n, i, o, w: _avg_pool(*_pool_args(n), i, o, w),
    F.adaptive_avg_pool2d: lambda n, i, o, w: _adaptive_avg(i, o, w),
    F.max_pool2d: "max pooling", torch.max_pool2d: "max pooling",
    F.adaptive_max_pool2d: "max pooling",
    operator.add: "a residual or skip connection", torch.add: "a residual or skip connection",
    operator.iadd: "a residual or skip connection", torch.cat: "a concatenation of branches",
    F.scaled_dot_product_attention: "attention",
}
for _f in (torch.sigmoid, torch.tanh, F.sigmoid, F.tanh, F.gelu, F.leaky_relu, F.elu,
           F.silu, F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, F.softplus,
           F.relu6, F.hardtanh, F.mish, F.selu, "sigmoid", "tanh", "softmax", "log_softmax"):
    FUNCTIONS[_f] = _NONLINEAR

_AVG_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                  "divisor_override")


def _pool_args(node: fx.Node) -> tuple:
    """F.avg_pool2d's arguments after the input, positional or by name."""
    given = dict(zip(_AVG_POOL_ARGS, node.args, strict=False)) | dict(node.kwargs)
    return (given["kernel_size"], given.get("stride"), given.get("padding", 0),
            given.get("ceil_mode", False), given.get("divisor_override"))


COVERED = ("Conv2d, Linear, AvgPool2d, AdaptiveAvgPool2d, BatchNorm1d/2d, Flatten, Dropout,"
           " Identity, ReLU")


def _name(node: fx.Node, gm: fx.GraphModule) -> str:
    """How a message names a node: its module path and type, or the function it calls."""
    if node.op == "call_module":
        return f"{node.target} ({type(gm.get_submodule(node.target)).__name__})"
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    return f"{node.name} ({'.' if node.op == 'call_method' else ''}{name}())"


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    """The per-sample shape of a node's tensor output (None: not a tensor)."""
    meta = node.meta.get("tensor_meta")
    shape = getattr(meta, "shape", None)
    return None if shape is None else tuple(shape[1:])


def _classify(node: fx.Node, gm: fx.GraphModule, shape_in, shape_out) -> Op | None:
    where = _name(node, gm)
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        rule = next((MODULES[t] for t in type(module).__mro__ if t in MODULES), None)
        if rule is None or isinstance(rule, str):
            raise Refused(rule or f"not covered (covered: {COVERED})")
        return rule(module, shape_in, shape_out, where)
    rule = FUNCTIONS.get(node.target) if node.op in ("call_function", "call_method") else None
    if rule is None or isinstance(rule, str):
        raise Refused(rule or f"not covered (covered: {COVERED}, and their functional forms)")
    return rule(node, shape_in, shape_out, where)


def _shapes(model: nn.Module, in_shape: tuple[int, ...]) -> fx.GraphModule:
    """The fx graph of `model` (eval mode), every node annotated with its output shape."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as err:  # fx raises many types; the message is what the user needs
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsupportedLayerError(
            f"{type(model).__name__} cannot be traced by torch.fx ({first}); the bounds need a"
            " forward pass without data-dependent control flow") from None
    param = next(model.parameters(), None)
    example = torch.zeros(1, *in_shape, dtype=param.dtype if param is not None else None,
                          device=param.device if param is not None else None)
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsupportedLayerError(f"{type(model).__name__} does not run on inputs of shape"
                                    f" {tuple(in_shape)}: {first}") from None
    return gm


def trace(model: nn.Module, in_shape: tuple[int, ...]) -> Traced:
    """The ops on the data path of `model` from its input to its logits, in order.

    Raises one UnsupportedLayerError listing every operation the bounds do not
    cover, and every place where the path branches or merges.
    """
    was_training = model.training
    model.eval()
    try:
        gm = _shapes(model, tuple(in_shape))
    finally:
        model.train(was_training)
    nodes = list(gm.graph.nodes)
    data = {n for n in nodes if n.op == "placeholder"}
    for node in nodes:
        if node.op != "output" and any(a in data for a in node.all_input_nodes):
            data.add(node)
    tensors = {n for n in data if _shape(n) is not None}
    problems, ops = [], {}
    if len([n for n in nodes if n.op == "placeholder"]) != 1:
        problems.append("the forward takes several inputs; the bounds need one image batch")
    for node in nodes:
        if node not in tensors or node.op == "placeholder":
            continue
        feeds = [a for a in node.all_input_nodes if a in tensors]
        try:
            if not feeds:
                raise Refused("makes a tensor from the input's shape, not its values")
            ops[node] = _classify(node, gm, _shape(feeds[0]), _shape(node))
            if len(feeds) > 1:
                raise Refused(f"combines {len(feeds)} tensors (a residual or skip connection)")
        except Refused as why:
            problems.append(f"{_name(node, gm)}: {why}")
    for node in sorted(tensors, key=nodes.index):
        users = [u for u in node.users if u in tensors or u.op == "output"]
        if len(users) > 1:
            what = "the input" if node.op == "placeholder" else _name(node, gm)
            problems.append(f"{what}: its output feeds {len(users)} operations (a skip"
                            " connection)")
    output = next(n for n in nodes if n.op == "output").args[0]
    if not isinstance(output, fx.Node) or output not in tensors:
        problems.append("the forward must return one tensor of logits")
    if problems:
        raise UnsupportedLayerError(
            f"{type(model).__name__} is not covered by the bounds (docs/bounds.md, \"Networks"
            " beyond CONV-L-H\"): " + "; ".join(dict.fromkeys(problems)))
    return _chain(gm, output, ops, tensors)


def _chain(gm: fx.GraphModule, output: fx.Node, ops: dict, tensors: set) -> Traced:
    """Walk from the logits back to the input: every node on the way has one tensor input."""
    chain, node = [], output
    while node.op != "placeholder":
        feed = next(a for a in node.all_input_nodes if a in tensors)
        if ops.get(node) is not None:
            chain.append((ops[node], feed))
        node = feed
    chain.reverse()
    return Traced(gm, [op for op, _ in chain], [feed for _, feed in chain])
