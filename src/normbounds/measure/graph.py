"""Any `nn.Module` -> the chain of operations the bounds can read, by torch.fx.

`trace` runs `torch.fx.symbolic_trace` (which also sees functional calls such as
`F.max_pool2d` that forward hooks miss) and one forward pass for the real
shapes, then follows the data from the input to the logits. Every operation
on that path is looked up in the tables below (built from rules.RULES) and becomes an `Op`: a linear
map (conv-like: Conv2d, average pooling, BatchNorm2d; dense: Linear,
BatchNorm1d), a flatten, or a ReLU; identities (dropout in eval mode,
nn.Identity) vanish. Everything else, and any branching of the path (a
residual or skip connection), is collected and refused with ONE
`UnsupportedLayerError` that lists every offending module or call.

The model is read in eval mode: batch norm uses its running statistics and
dropout is the identity, which is the function a trained network computes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from normbounds.errors import ModelInputError, UnsupportedLayerError
from normbounds.measure.rules import (
    COVERED,
    Op,
    Refused,
    adaptive_avg,
    avg_pool,
    batch_norm,
    combines,
    dispatch,
    not_covered,
    pair,
    plain_conv,
    relu,
    reshape,
)


@dataclass
class Traced:
    """The data path of a traced model: its ops in order and the fx nodes they read."""

    module: fx.GraphModule | None  # None for a TorchScript model
    ops: list[Op]
    inputs: list[fx.Node]  # the node whose output each op reads


def _f64(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to(torch.float64)


def _conv(m: nn.Conv2d, shape_in, shape_out, where) -> Op:
    plain_conv(m.groups, m.dilation)
    if m.padding_mode != "zeros":
        raise Refused(f"padding_mode {m.padding_mode!r} (only zero padding is covered)")
    k, s = pair(m.kernel_size, "kernel"), pair(m.stride, "stride")
    pad = m.padding
    if pad == "same":
        if k % 2 == 0 or s != 1:
            raise Refused(f"padding 'same' with kernel {k}, stride {s} pads unevenly")
        pad = (k - 1) // 2
    pad = 0 if pad == "valid" else pair(pad, "padding")
    return Op("conv", where, shape_in, shape_out, _f64(m.weight), _f64(m.bias), s, pad)


def _batch_norm(m: nn.modules.batchnorm._BatchNorm, shape_in, shape_out, where) -> Op:
    affine = m.affine
    return batch_norm(_f64(m.weight) if affine else None, _f64(m.bias) if affine else None,
                      _f64(m.running_mean), _f64(m.running_var), m.eps, shape_in, where)


def _dropout(node: fx.Node) -> None:
    training = node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
    if training:
        raise Refused("dropout with training=True, random at evaluation (pass"
                      " training=self.training)")
    return None


def _nothing(*_) -> None:
    return None


# rule name -> (module, in, out, where) -> Op | None, for every covered rule with modules
MODULES: dict[type, Callable | str] = dispatch({
    "Conv2d": _conv,
    "Linear": lambda m, i, o, w: Op("dense", w, i, o, _f64(m.weight), _f64(m.bias)),
    "AvgPool2d": lambda m, i, o, w: avg_pool(m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                             m.divisor_override, i, o, w),
    "AdaptiveAvgPool2d": lambda m, i, o, w: adaptive_avg(i, o, w),
    "BatchNorm1d/2d": _batch_norm,
    "ReLU": lambda m, i, o, w: relu(i, o, w),
    "Flatten": lambda m, i, o, w: reshape(i, o, w),
    "Identity": _nothing, "Dropout": _nothing,  # eval mode
}, "modules")
# rule name -> (node, in, out, where) -> Op | None, for the functions and method names
FUNCTIONS: dict[Callable | str, Callable | str] = dispatch({
    "ReLU": lambda n, i, o, w: relu(i, o, w),
    "Flatten": lambda n, i, o, w: reshape(i, o, w),
    "Identity": _nothing, "Dropout": lambda n, i, o, w: _dropout(n),
    "AvgPool2d": lambda n, i, o, w: avg_pool(*_pool_args(n), i, o, w),
    "AdaptiveAvgPool2d": lambda n, i, o, w: adaptive_avg(i, o, w),
}, "functions")

_AVG_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                  "divisor_override")


def _pool_args(node: fx.Node) -> tuple:
    """F.avg_pool2d's arguments after the input, positional or by name."""
    given = dict(zip(_AVG_POOL_ARGS, node.args, strict=False)) | dict(node.kwargs)
    return (given["kernel_size"], given.get("stride"), given.get("padding", 0),
            given.get("ceil_mode", False), given.get("divisor_override"))


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
    fails_on(model, example)
    with torch.no_grad():
        ShapeProp(gm).propagate(example)  # the model ran on `example`: so does its graph
    return gm


def fails_on(model: nn.Module, example: torch.Tensor) -> None:
    """Run `model` on `example` (no grad), first: a model that fails on the inputs is
    the caller's mistake, said in one line with torch's own last message (ShapeProp would
    print a traceback and hide that message in its own)."""
    try:
        with torch.no_grad():
            model(example)
    except Exception as err:  # any op can refuse the inputs; its message says why
        lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
        last = re.sub(r"^\w+(Error|Exception): ", "", lines[-1]) if lines else type(err).__name__
        name = getattr(model, "original_name", type(model).__name__)  # a ScriptModule's class
        raise ModelInputError(f"{name} fails on inputs of shape {tuple(example.shape[1:])}:"
                              f" {last}") from None


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
                raise combines(len(feeds))
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
        raise not_covered(type(model).__name__, problems)
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
