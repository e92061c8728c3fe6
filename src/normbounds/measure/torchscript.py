"""A TorchScript model -> the same chain of `graph.Op`s that torch.fx gives for a module.

torch.fx cannot trace a loaded ScriptModule, so its frozen graph
(`torch.jit.freeze`, which also folds batch norm into the conv before it) is
read instead: weights are constants there, and every aten call on the data
path is looked up in `ATEN`. Shapes follow from the input shape by the same
size formulas the ops use. Anything else is refused, all at once, as in graph.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from normbounds.measure.geometry import conv_side
from normbounds.measure.graph import fails_on
from normbounds.measure.rules import (
    Op,
    Refused,
    avg_pool,
    batch_norm,
    combines,
    dispatch,
    not_covered,
    pair,
    plain_conv,
    pool_weight,
    relu,
    reshape,
)


def _const(value: torch.Value):
    """The constant behind a graph value (frozen weights, ints, lists, None)."""
    return value.toIValue()


def _conv_op(args: list, shape, where: str) -> Op:
    weight, bias, stride, padding, dilation = (_const(a) for a in args[1:6])
    groups = _const(args[8] if len(args) > 9 else args[6])  # _convolution vs conv2d
    if len(args) > 9 and _const(args[6]):
        raise Refused("a transposed convolution")
    plain_conv(groups, dilation)
    if isinstance(padding, str):
        raise Refused(f"padding {padding!r} (export with numeric padding)")
    k, s, p = weight.shape[-1], pair(stride, "stride"), pair(padding, "padding")
    side = conv_side(shape[1], k, s, p)
    out = (weight.shape[0], side, side)
    f64 = None if bias is None else bias.double()
    return Op("conv", where, shape, out, weight.double(), f64, s, p)


def _linear_op(args: list, shape, where: str) -> Op:
    weight, bias = _const(args[1]), _const(args[2])
    out = (*shape[:-1], weight.shape[0])
    return Op("dense", where, shape, out, weight.double(), None if bias is None else bias.double())


def _pool_op(args: list, shape, where: str) -> Op:
    kernel, stride, padding, ceil = (_const(a) for a in args[1:5])
    divisor = _const(args[6]) if len(args) > 6 else None
    op = avg_pool(kernel, stride or kernel, padding, ceil, divisor, shape, shape, where)
    side = conv_side(shape[1], op.weight.shape[-1], op.stride)
    return Op("conv", where, shape, (shape[0], side, side), op.weight, None, op.stride)


def _adaptive_op(args: list, shape, where: str) -> Op:
    size = pair(_const(args[1]), "output size")
    if shape[1] % size:
        raise Refused(f"adaptive pooling from side {shape[1]} to {size} (must divide)")
    k = shape[1] // size
    return Op("conv", where, shape, (shape[0], size, size), pool_weight(shape[0], k), None, k)


def _batch_norm_op(args: list, shape, where: str) -> Op:
    weight, bias, mean, var, training, _, eps = (_const(a) for a in args[1:8])
    if training:
        raise Refused("batch norm in training mode")
    return batch_norm(weight, bias, mean, var, eps, shape, where)


def _flatten_op(args: list, shape, where: str) -> Op | None:
    start, end = _const(args[1]), _const(args[2])
    if start != 1 or end not in (-1, len(shape)):
        raise Refused(f"flatten of dimensions {start}..{end} (only of all but the batch)")
    return reshape(shape, (int(torch.Size(shape).numel()),), where)


def _dropout_op(args: list, shape, where: str) -> None:
    if _const(args[2]):
        raise Refused("dropout in training mode")
    return None


# rule name -> (args, in shape, where) -> Op | None, for every covered rule with aten kinds
ATEN: dict[str, Callable | str] = dispatch({
    "Conv2d": _conv_op, "Linear": _linear_op, "AvgPool2d": _pool_op,
    "AdaptiveAvgPool2d": _adaptive_op, "BatchNorm1d/2d": _batch_norm_op,
    "Flatten": _flatten_op, "ReLU": lambda a, s, w: relu(s, s, w),
    "Dropout": _dropout_op, "Identity": lambda a, s, w: None,
}, "aten")


def _example(module: torch.jit.ScriptModule, in_shape: tuple[int, ...]) -> torch.Tensor:
    """A zero batch of one input, on the dtype and device of the model's weights."""
    param = next(iter(module.parameters()), None)
    return torch.zeros(1, *in_shape, dtype=param.dtype if param is not None else None,
                       device=param.device if param is not None else None)


def trace_script(module: torch.jit.ScriptModule, in_shape: tuple[int, ...]) -> list[Op]:
    """The ops on the data path of a TorchScript model, in order (one error for all
    that are not covered)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still read
        example = _example(module, in_shape)  # before freezing: weights still parameters
        frozen = torch.jit.freeze(module.eval())
    fails_on(frozen, example)
    graph = frozen.graph
    data = {list(graph.inputs())[1]}
    shapes = {list(graph.inputs())[1]: tuple(in_shape)}
    ops, problems = [], []
    for node in graph.nodes():
        inputs = list(node.inputs())
        feeds = [v for v in inputs if v in data]
        if not feeds:
            continue
        # a traced model's source line reads "<file>(<line>): <function>": the place is
        # the file and line, and ": " separates a place from its reason (rules.not_covered)
        line = node.sourceRange().splitlines()[0].strip().split(": ")[0]
        where = f"{node.kind()} ({line or 'script'})"
        for value in node.outputs():
            data.add(value)
        rule = ATEN.get(node.kind())
        try:
            if rule is None or isinstance(rule, str):
                raise Refused(rule or "not covered")
            if len(feeds) > 1:
                raise combines(len(feeds))
            if feeds[0] not in shapes:  # after a refused op: already named, shape unknown
                continue
            op = rule(inputs, shapes[feeds[0]], where)
        except Refused as why:
            problems.append(f"{where}: {why}")
            continue
        shapes[node.output()] = op.out_shape if op is not None else shapes[feeds[0]]
        if op is not None:
            ops.append(op)
    for value in data:
        if len([u for u in value.uses() if u.user.kind() != "prim::Return"]) > 1:
            problems.append(f"{value.debugName()}: its value feeds several operations (a skip"
                            " connection)")
    if problems:
        raise not_covered("the TorchScript model", problems)
    return ops
