"""`train.precision` and `train.compile`: what the training step computes in and how.

Lookup tables, one row per allowed value (docs/pipeline.md, "Precision, compilation and
the evaluation batch"):

- fp32 (default, the paper's): IEEE float32 products everywhere. TF32 is switched
  off for cuBLAS and for cuDNN, where PyTorch turns it on for convolutions by default.
- tf32: float32 storage, TF32 tensor-core products (10-bit mantissa) for matmuls and
  convolutions on Ampere or newer GPUs; on a CPU the same numbers as fp32.
- bf16: the forward pass and the loss under autocast to bfloat16; the weights, their
  gradients and the optimiser state stay float32.

Whatever the precision, the checkpoints hold float32 weights and every bound is
computed from them in float64. `train.compile` wraps the model in torch.compile
(`default`) or additionally captures CUDA graphs (`reduce-overhead`), which removes
the launch overhead of the small batch-32 steps on a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Precision:
    tf32: bool  # TF32 tensor-core products for float32 matmuls and convolutions
    autocast: torch.dtype | None  # the forward pass's autocast dtype (None: off)


PRECISIONS: dict[str, Precision] = {
    "fp32": Precision(tf32=False, autocast=None),
    "tf32": Precision(tf32=True, autocast=None),
    "bf16": Precision(tf32=False, autocast=torch.bfloat16),
}
COMPILE_MODES: dict[str, str | None] = {  # train.compile -> torch.compile's mode (None: eager)
    "none": None,
    "default": "default",
    "reduce-overhead": "reduce-overhead",  # + CUDA graphs on a GPU
}
COMPILE_BACKEND = "inductor"  # tests swap in "eager" (no C++ or Triton compiler needed)


@contextlib.contextmanager
def tf32_products(enabled: bool) -> Iterator[None]:
    """TF32 on or off for cuBLAS and cuDNN inside the block; restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def forward_context(name: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context of a training step's forward pass and loss under train.precision."""
    dtype = PRECISIONS[name].autocast
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def compiled(model: nn.Module, mode: str) -> nn.Module:
    """The module the training step calls: `model` itself, or torch.compile of it. The
    compiled wrapper shares the parameters; checkpoints save `model`'s own state."""
    torch_mode = COMPILE_MODES[mode]
    if torch_mode is None:
        return model
    # the public call carries the current mode on to inductor (runtime.setup_torch skips it)
    torch.use_deterministic_algorithms(
        torch.are_deterministic_algorithms_enabled(),
        warn_only=torch.is_deterministic_algorithms_warn_only_enabled())
    return torch.compile(model, backend=COMPILE_BACKEND, mode=torch_mode)
