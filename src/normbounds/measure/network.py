"""A traced model in the theorem's form: bias-free linear layers with ReLU between them.

docs/bounds.md, "Networks beyond CONV-L-H". The ops of `graph.trace` are cut at
every ReLU; the linear ops between two ReLUs (conv, average pooling, batch
norm, flatten, Linear) are composed into ONE layer, exactly; biases then become
an extra constant input channel (the augmented network is bias-free and
computes the same logits). `Network.specs` are the layers every bound reads,
and `Network.forward_with_patch_norms` gives the logits with each layer's largest
(augmented) input-patch norm from one forward pass of the model itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from normbounds.errors import InputError, UnsupportedLayerError
from normbounds.measure.batching import eval_batch_size
from normbounds.measure.compose import Layer, segment_layers
from normbounds.measure.graph import Traced, trace
from normbounds.measure.layers import LayerSpec, max_patch_norm_sq
from normbounds.measure.torchscript import trace_script


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
    # a dense layer after a conv reads all n^2 positions of the map: pred = n^2; a first
    # dense layer reads the image as one position
    side = layer.in_shape[1] if len(layer.in_shape) == 3 and index > 1 else 1
    if augment:
        d = w.shape[1]
        # the constant channel after a conv is n^2 ones (its constant output at every
        # position); the input's own constant is ONE coordinate (docs/bounds.md, "Biases")
        constants = side * side
        big = torch.zeros(w.shape[0] + extra, d + constants, dtype=torch.float64)
        big[:w.shape[0], :d], big[:w.shape[0], d] = w, bias
        if extra:
            big[-1, d] = 1.0
        w = big
    return LayerSpec(index, kind, w, (w.shape[1],), map_side=side)


def layer_input(inp: torch.Tensor, spec: LayerSpec, augmented: bool) -> torch.Tensor:
    """What layer `spec` reads: conv (B, c, n, n), dense (B, d) flattened, with the constant
    channel appended when augmented (conv: one channel of ones; dense: n^2 ones after a
    conv, else one)."""
    if spec.kind != "conv":
        inp = inp.flatten(1)
    if augmented:
        size = (1, *inp.shape[2:]) if spec.kind == "conv" else (spec.n_inputs - inp.shape[1],)
        inp = torch.cat([inp, inp.new_ones(inp.shape[0], *size)], dim=1)
    return inp


def _warn_if_raw_pixels(x: torch.Tensor, name: str) -> None:
    """A warning (not an error: a model may be trained on 0-255) when x looks like raw
    pixels, whole numbers from 0 up to more than 1: every bound grows with the input norm."""
    top = float(x.max())
    if top > 1.5 and float(x.min()) >= 0 and bool((x == x.round()).all()):
        warnings.warn(f"{name}: whole numbers from 0 to {top:g}, like raw 0-255 pixels; every"
                      " bound grows with the input norm, so pass the inputs exactly as the"
                      " model saw them in training (x / 255 for pixels in [0, 1])",
                      UserWarning, stacklevel=4)


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
        _warn_if_raw_pixels(x, name)
        return x.to(device=self.specs[0].weight.device, dtype=self.dtype)

    def labels(self, y: object, n: int, name: str = "train_y") -> torch.Tensor:
        """y checked (n integer class labels in 0..C-1) and moved to the module's device."""
        y = class_labels(y, n, name, self.num_classes)
        return y.to(device=self.specs[0].weight.device)

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
        to P, m n0^2 to S^2 and n0^2 to X^2; the one constant coordinate of a first dense
        layer adds m to S^2 and 1 to X^2."""
        if not self.augmented:
            return stats
        dense_first = self.specs[0].kind != "conv"
        m, pixels = stats["m"], 1 if dense_first else self.in_shape[1] * self.in_shape[2]
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
    layers, feeds = segment_layers(traced, in_shape)
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


def image_shape(x: object, name: str = "train_x") -> tuple[int, ...]:
    """(c, n, n) of a batch of images x (N, c, n, n): anything else is one InputError that
    says the expected shape in words (checked before a model is traced on it)."""
    if torch.is_tensor(x) and x.dim() == 4:
        if x.shape[2] != x.shape[3]:  # the sides n_l, the n_l^2 positions: square maps
            raise InputError(f"{name}: the bounds read square images (n x n pixels); got"
                             f" {x.shape[2]} x {x.shape[3]} (shape {tuple(x.shape)}): pad or"
                             " crop them to a square, as the model should then see them")
        return tuple(x.shape[1:])
    got = f"shape {tuple(x.shape)}" if torch.is_tensor(x) else type(x).__name__
    hint = (" (one channel? add its axis: x.unsqueeze(1))"
            if torch.is_tensor(x) and x.dim() == 3 else "")
    raise InputError(f"{name}: expected a batch of images of shape (N, c, n, n), N images of"
                     f" c channels and n x n pixels; got {got}{hint}")


def class_labels(y: object, n: int, name: str, num_classes: int | None = None
                 ) -> torch.Tensor:
    """y checked: n integer class labels, >= 0 and below num_classes (when known), as long."""
    if (not torch.is_tensor(y) or y.dim() != 1 or len(y) != n or y.is_floating_point()
            or y.is_complex() or y.dtype == torch.bool):
        got = f"{tuple(y.shape)} {y.dtype}" if torch.is_tensor(y) else type(y).__name__
        raise InputError(f"{name}: expected {n} integer class labels, shape ({n},), got {got}")
    low, high = (int(y.min()), int(y.max())) if n else (0, 0)
    if low < 0 or (num_classes is not None and high >= num_classes):
        allowed = (f"lie in 0..{num_classes - 1} (the model has {num_classes} logits)"
                   if num_classes is not None else "be class indices >= 0")
        raise InputError(f"{name}: labels must {allowed}, got {low}..{high}")
    return y.long()


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


def weights_of(network: Network, other: nn.Module, role: str) -> list[torch.Tensor]:
    """The weight of each of `network`'s layers in `other`, a network of the same layers
    (the reference M_l of Graf's and Ledent's bounds, the initialisation W^0 of dist_init),
    read the same way and moved to the network's device; `role` names `other` in the error."""
    specs, refs = network.specs, describe(other, network.in_shape)
    mine, theirs = ([tuple(s.weight.shape) for s in found] for found in (specs, refs))
    if theirs != mine:
        raise InputError(f"the {role} network's layers {theirs} do not match the network's"
                         f" {mine}: pass a network of the same architecture")
    return [r.weight.to(s.weight.device) for r, s in zip(refs, specs, strict=True)]
