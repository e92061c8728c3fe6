"""A traced model in the theorem's form: bias-free linear layers with ReLU between them.

docs/bounds.md, "Networks beyond CONV-L-H". The ops of `graph.trace` are cut at
every ReLU; the linear ops between two ReLUs (conv, average pooling, batch
norm, flatten, Linear) are composed into ONE layer, exactly; biases then become
an extra constant input channel (the augmented network is bias-free and
computes the same logits). `Network.specs` are the layers every bound reads,
and `Network.forward_with_inputs` gives the logits with each layer's
(augmented) input from one forward pass of the model itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import fx, nn

from normbounds.errors import InputError, UnsupportedLayerError
from normbounds.measure.batching import eval_batch_size
from normbounds.measure.geometry import conv_side
from normbounds.measure.graph import Traced, trace
from normbounds.measure.layers import LayerSpec, max_patch_norm_sq
from normbounds.measure.lipschitz import conv_adjoint
from normbounds.measure.rules import Op
from normbounds.measure.torchscript import trace_script


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


def _layers(traced, in_shape: tuple[int, ...]) -> tuple[list[Layer], list[fx.Node]]:
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


def _spec(index: int, layer: Layer, kind: str, augment: bool) -> LayerSpec:
    """The LayerSpec of a layer; with `augment`, its bias-free augmented weights: the bias
    on the constant input channel, and (hidden layers) one extra output that is 1."""
    w, bias = layer.weight, layer.bias
    if bias is None:
        bias = torch.zeros(w.shape[0], dtype=torch.float64)
    extra = int(augment and kind != "head")
    if kind == "conv":
        c, n, _ = layer.in_shape
        k, p = w.shape[-1], layer.padding
        if augment:
            if 2 * p > k - 1:  # tap (p, p) must read a real pixel at every output position
                raise UnsupportedLayerError(
                    f"layer {index} has a bias and padding {p} > (kernel {k} - 1) / 2: no tap"
                    " reads a real pixel at every position, so the bias cannot be a weight")
            big = torch.zeros(w.shape[0] + 1, c + 1, k, k, dtype=torch.float64)
            big[:-1, :-1], big[:-1, c, p, p], big[-1, c, p, p] = w, bias, 1.0
            w, c = big, c + 1
        return LayerSpec(index, "conv", w, (c, n, n), k, layer.stride, p)
    # a dense layer after a conv reads all n^2 positions of the map: pred = n^2
    side = layer.in_shape[1] if len(layer.in_shape) == 3 and index > 1 else 1
    if augment:
        d = w.shape[1]
        constants = layer.in_shape[1] ** 2 if len(layer.in_shape) == 3 else 1
        big = torch.zeros(w.shape[0] + extra, d + constants, dtype=torch.float64)
        big[:w.shape[0], :d], big[:w.shape[0], d] = w, bias
        if extra:
            big[-1, d] = 1.0
        w = big
    return LayerSpec(index, kind, w, (w.shape[1],), map_side=side)


def layer_input(inp: torch.Tensor, spec: LayerSpec, augmented: bool) -> torch.Tensor:
    """What layer `spec` reads: conv (B, c, n, n), dense (B, d) flattened, with the constant
    channel appended when augmented (conv: one channel of ones; dense: n^2 or 1 ones)."""
    if spec.kind != "conv":
        inp = inp.flatten(1)
    if augmented:
        size = (1, *inp.shape[2:]) if spec.kind == "conv" else (spec.n_inputs - inp.shape[1],)
        inp = torch.cat([inp, inp.new_ones(inp.shape[0], *size)], dim=1)
    return inp


class PatchNorm(nn.Module):
    """Ledent's b_l^2 over a batch: the largest squared norm of an input patch of one
    layer (0-dim). Put into the traced graph right where the layer's input is made,
    so each input is reduced and freed in turn instead of all of them kept at once."""

    def __init__(self, spec: LayerSpec, augmented: bool) -> None:
        super().__init__()
        self.spec, self.augmented = spec, augmented

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        return max_patch_norm_sq(layer_input(inp, self.spec, self.augmented), self.spec)


@dataclass
class Network:
    """A model as the bounds read it: `specs` (bias-free, augmented when the model has a
    bias), and its forward pass returning the logits and every layer's b_l^2."""

    specs: list[LayerSpec]
    augmented: bool
    in_shape: tuple[int, ...]
    num_classes: int
    module: nn.Module  # x -> (logits, *each layer's largest squared patch norm)
    dtype: torch.dtype = torch.float32  # what `module` reads: the model's own dtype

    def inputs(self, x: object, name: str = "train_x") -> torch.Tensor:
        """x checked (finite float images (N, c, n, n) of the network's input shape, N >= 1)
        and cast to the dtype and device the module reads."""
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        if (not torch.is_tensor(x) or not x.is_floating_point() or x.dim() != 4
                or len(x) == 0 or tuple(x.shape[1:]) != self.in_shape):
            want = ", ".join(str(v) for v in self.in_shape)
            dtype = f" {x.dtype}" if torch.is_tensor(x) else ""
            raise InputError(f"{name}: expected float images of shape (N, {want}) with"
                             f" N >= 1, got {shape}{dtype}")
        if not x.isfinite().all():
            raise InputError(f"{name}: holds nan or inf; pass finite images")
        return x.to(device=self.specs[0].weight.device, dtype=self.dtype)

    def forward_with_patch_norms(self, x: torch.Tensor) -> tuple[torch.Tensor,
                                                                  list[torch.Tensor]]:
        """Logits (B, C) and, per layer, the largest squared norm of an (augmented,
        zero-padded) input patch over the batch (0-dim tensors)."""
        logits, *patch_sq = self.module(x)
        return logits, patch_sq

    def batch_size(self, setting: int | str) -> int:
        """bound.eval_batch_size for this network on its device: `auto` sizes the batch by
        the largest float64 input plus output of one layer (batching.eval_batch_size)."""
        sample = 8 * max(s.n_inputs + s.out_channels * s.positions for s in self.specs)
        return eval_batch_size(setting, sample, self.specs[0].weight.device)

    def data_stats(self, stats: dict) -> dict:
        """P, S, X of the inputs the (augmented) network reads: a constant channel adds m
        to P, m n0^2 to S^2 and n0^2 to X^2."""
        if not self.augmented:
            return stats
        m, pixels = stats["m"], self.in_shape[1] * self.in_shape[2]
        out = {**stats, "P": stats["P"] + m, "S": (stats["S"] ** 2 + m * pixels) ** 0.5}
        if "X" in stats:
            out["X"] = (stats["X"] ** 2 + pixels) ** 0.5
        return out


class _Canonical(nn.Module):
    """The composed layers run in float64: the forward pass of a TorchScript model, whose
    intermediate values cannot be read. Returns (logits, *each layer's b_l^2)."""

    def __init__(self, layers: list[Layer], patches: list[PatchNorm]) -> None:
        super().__init__()
        self.layers, self.patches = layers, nn.ModuleList(patches)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h, inputs = x.double(), []
        for i, la in enumerate(self.layers):
            inputs.append(self.patches[i](h))
            h = (F.conv2d(h, la.weight, la.bias, la.stride, la.padding) if la.kind == "conv"
                 else F.linear(h.flatten(1), la.weight, la.bias))
            h = torch.relu(h) if i < len(self.layers) - 1 else h
        return (h, *inputs)


def read_network(model: nn.Module, in_shape: tuple[int, ...]) -> Network:
    """`model` (an nn.Module or a TorchScript module) on inputs of shape in_shape
    (c, n, n), in the theorem's form."""
    script = isinstance(model, torch.jit.ScriptModule)
    if script:
        ops = trace_script(model, in_shape)
        traced = Traced(None, ops, [None] * len(ops))
    else:
        traced = trace(model, in_shape)
    layers, feeds = _layers(traced, in_shape)
    augment = any(layer.bias is not None for layer in layers)
    kinds = ["conv" if la.kind == "conv" else "fc" for la in layers[:-1]] + ["head"]
    specs = [_spec(i, la, kind, augment)
             for i, (la, kind) in enumerate(zip(layers, kinds, strict=True), start=1)]
    patches = [PatchNorm(spec, augment) for spec in specs]
    if script:
        module = _Canonical(layers, patches)
    else:  # each layer's input -> its b_l^2 in the graph; the graph returns those and the logits
        module = traced.module
        graph = module.graph
        output = next(n for n in graph.nodes if n.op == "output")
        reduced = []
        for i, (feed, patch) in enumerate(zip(feeds, patches, strict=True), start=1):
            module.add_submodule(f"patch_norm_{i}", patch)
            with graph.inserting_after(feed):
                reduced.append(graph.call_module(f"patch_norm_{i}", (feed,)))
        output.args = ((output.args[0], *reduced),)
        module.recompile()
    param = None if script else next(model.parameters(), None)
    dtype = torch.float64 if script else param.dtype if param is not None else torch.float32
    return Network(specs, augment, tuple(in_shape), layers[-1].weight.shape[0], module, dtype)


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """`module` and all its submodules in eval mode, their own modes restored after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def describe(model: nn.Module, in_shape: tuple[int, ...] | None = None) -> list[LayerSpec]:
    """The layers every bound reads (read_network(...).specs); in_shape defaults to the
    project's `model.arch.in_shape`."""
    return read_network(model, input_shape(model, in_shape)).specs


def input_shape(model: nn.Module, in_shape: tuple[int, ...] | None) -> tuple[int, ...]:
    if in_shape is not None:
        return tuple(in_shape)
    arch = getattr(model, "arch", None)
    if arch is None:
        raise InputError("the input shape is unknown: pass train_x (or in_shape=(c, n, n))")
    return tuple(arch.in_shape)
