"""The linear ops between two ReLUs -> ONE layer, exactly (docs/bounds.md, "Networks
beyond CONV-L-H"): convs compose into one conv, pooling and batch norm fold into the
conv before them, a flatten turns what follows into a dense layer reading the map.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import fx

from normbounds.errors import UnsupportedLayerError
from normbounds.measure.geometry import conv_side
from normbounds.measure.lipschitz import conv_adjoint
from normbounds.measure.rules import Op


@dataclass(frozen=True)
class Layer:
    """One composed linear layer, its bias still apart."""

    kind: str  # "conv" or "dense"
    weight: torch.Tensor  # float64; conv (H, c, k, k), dense (H, d)
    bias: torch.Tensor | None
    in_shape: tuple[int, ...]  # conv (c, n, n); dense: what it reads, a map or (d,)
    stride: int = 1
    padding: int = 0
    flat: bool = False  # a conv whose output was flattened (a dense layer follows)

    @property
    def out_shape(self) -> tuple[int, ...]:
        if self.kind == "dense":
            return (self.weight.shape[0],)
        c, n, _ = self.in_shape
        side = conv_side(n, self.weight.shape[-1], self.stride, self.padding)
        return (self.weight.shape[0], side, side)


def _bias_sum(*biases: torch.Tensor | None) -> torch.Tensor | None:
    given = [b for b in biases if b is not None]
    return sum(given[1:], given[0]) if given else None


def compose_convs(a: Layer, b: Op) -> Layer:
    """conv b after conv a, no ReLU between: one conv with kernel k_a + (k_b - 1) s_a,
    stride s_a s_b, padding p_a. A padded b reads zeros that a cannot produce unless a
    is a bias-free 1 x 1 stride-1 conv (then the padding passes through)."""
    k_a, k_b = a.weight.shape[-1], b.weight.shape[-1]
    pointwise = k_a == 1 and a.stride == 1 and a.padding == 0
    if b.padding and not (pointwise and (a.bias is None or not a.bias.any())):
        raise UnsupportedLayerError(
            f"{b.where} pads the output of a linear layer without a ReLU between them: the"
            " composed layer would need a position-dependent bias or padding")
    k = k_a + (k_b - 1) * a.stride
    weight = torch.zeros(b.weight.shape[0], a.weight.shape[1], k, k, dtype=torch.float64)
    for i in range(k_b):
        for j in range(k_b):
            tap = torch.einsum("om,mihw->oihw", b.weight[:, :, i, j], a.weight)
            weight[:, :, i * a.stride:i * a.stride + k_a, j * a.stride:j * a.stride + k_a] += tap
    carried = None if a.bias is None else b.weight.sum((2, 3)) @ a.bias
    padding = b.padding if b.padding else a.padding
    return Layer("conv", weight, _bias_sum(carried, b.bias), a.in_shape,
                 a.stride * b.stride, padding)


def conv_as_dense(conv: Layer, rows: torch.Tensor | None = None) -> Layer:
    """The dense layer rows @ flatten(conv(x)) (rows: identity when None) on the conv's
    input map: each row is pulled back through the conv's adjoint."""
    out = conv.out_shape
    if rows is None:
        rows = torch.eye(out[0] * out[1] * out[2], dtype=torch.float64)
    back = conv_adjoint(conv.weight, conv.in_shape[1], conv.stride, conv.padding)
    weight = back(rows.view(-1, *out)).flatten(1)  # (H, c n n)
    carried = None if conv.bias is None else rows @ conv.bias.repeat_interleave(out[1] * out[2])
    return Layer("dense", weight, carried, conv.in_shape)


def _dense_after(cur: Layer | None, op: Op, reads: tuple[int, ...]) -> Layer:
    if len(op.in_shape) != 1:
        raise UnsupportedLayerError(f"{op.where} acts on the last axis of a feature map;"
                                    " flatten the map before a Linear layer")
    if cur is None:
        return Layer("dense", op.weight, op.bias, reads)
    if cur.kind == "conv":
        cur = conv_as_dense(cur, op.weight)
        return replace(cur, bias=_bias_sum(cur.bias, op.bias))
    carried = None if cur.bias is None else op.weight @ cur.bias
    return Layer("dense", op.weight @ cur.weight, _bias_sum(carried, op.bias), cur.in_shape)


def compose(ops: list[Op], reads: tuple[int, ...]) -> Layer | None:
    """The ops between two ReLUs as one layer (None: no linear op among them). `reads` is
    what the first op reads: a feature map, or the map a flatten before it came from."""
    cur: Layer | None = None
    for op in ops:
        if op.kind == "flatten":
            if cur is not None and cur.kind == "conv":
                cur = replace(cur, flat=True)
        elif op.kind == "dense":
            cur = _dense_after(cur, op, reads)
        elif cur is None:
            if len(reads) != 3 or op.in_shape != reads:
                raise UnsupportedLayerError(f"{op.where} reads a flattened tensor")
            cur = Layer("conv", op.weight, op.bias, op.in_shape, op.stride, op.padding)
        elif cur.kind == "dense" or cur.flat:
            raise UnsupportedLayerError(f"{op.where}: a conv after a flatten is not covered")
        else:
            cur = compose_convs(cur, op)
    return cur


def segment_layers(traced, in_shape: tuple[int, ...]) -> tuple[list[Layer], list[fx.Node]]:
    """The composed layers and the node each one reads (the output of the ReLU before it)."""
    segments, ops, feed = [], [], None
    for op, node in zip(traced.ops, traced.inputs, strict=True):
        if op.kind == "relu":
            segments.append((ops, feed))
            ops, feed = [], None
        else:
            ops.append(op)
            feed = node if feed is None else feed
    segments.append((ops, feed))
    if not segments[0][0] or not segments[-1][0]:
        where = "before the first" if not segments[0][0] else "after the last"
        raise UnsupportedLayerError(f"the model has a ReLU {where} linear"
                                    " layer: the bounds read linear layers with ReLU between"
                                    " them and the logits straight from the last one")
    layers, feeds, reads, pending = [], [], tuple(in_shape), None
    for i, (ops, feed) in enumerate(segments):
        layer = compose(ops, reads) if ops else None
        if layer is None:  # only reshapes (or nothing) between two ReLUs: ReLU o ReLU = ReLU
            pending = pending or feed
            continue
        if i == len(segments) - 1 and layer.kind == "conv":
            if not layer.flat:
                raise UnsupportedLayerError("the model's output is a feature map; the bounds"
                                            " need logits of shape (batch, classes)")
            layer = conv_as_dense(layer)
        layers.append(replace(layer, flat=False))
        feeds.append(pending or feed)
        reads, pending = layers[-1].out_shape, None
    if layers[-1].kind != "dense":
        raise UnsupportedLayerError("the last linear layer must produce the logits")
    return layers, feeds
