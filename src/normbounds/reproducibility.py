"""The same float results on every x86-64 CPU: pinned kernels, threads and algorithms.

Three libraries inside torch choose CPU kernels by the CPU they find, and the
choice changes float results (wider vectors sum in another order, FMA or not):
oneDNN (convolutions), ATen's own vectorised kernels (elementwise ops, reductions)
and MKL (matrix products, LAPACK); so does OpenBLAS inside numpy and scipy (scipy's
tridiagonal eigensolver in Lanczos). Each reads an environment variable once, when
it first runs a kernel or loads. `pin_kernels()` sets them, so a program that calls it
before importing `torch` runs the same kernels on every x86-64 CPU with SSE4.1 (every
x86-64-v2 CPU: Intel since 2008, AMD since 2011): the same low level in each library,
which every such CPU has. Importing `normbounds.pipeline` calls it (every stage and the
`normbounds` command import that first); importing `normbounds` or `normbounds.measure`
does not, so an API user's process keeps its own kernels unless it asks for these.

With `base.threads` (the same number on every machine) and deterministic
algorithms, a given torch version gives byte-identical results anywhere. On
CUDA, deterministic algorithms (and cuBLAS's fixed workspace) make results
repeat on the same GPU model; other GPU models may differ.

`NORMBOUNDS_NATIVE_KERNELS=1` keeps each CPU's own kernels: faster
(`benchmarks/kernels.py` measures by how much), but the numbers then depend on
the machine.

This module must not import torch: it runs before torch loads.
"""

from __future__ import annotations

import os
import sys

KERNEL_ENV: dict[str, str] = {
    "ONEDNN_MAX_CPU_ISA": "SSE41",  # oneDNN: no AVX, AVX2 or AVX-512 JIT kernels
    "ATEN_CPU_CAPABILITY": "default",  # ATen: the kernels built for baseline x86-64
    # MKL: conditional numerical reproducibility on its SSE2 code path, the one branch MKL
    # honours on every x86-64 CPU: on a non-Intel CPU it replaces SSE4_2, AVX2, ... by
    # AUTO, the CPU's own path (MKL_VERBOSE printed CNR:AUTO for them on this project's
    # AMD machine), so Intel and AMD machines would round differently
    "MKL_CBWR": "COMPATIBLE",
    # OpenBLAS (numpy's and scipy's copies): the Nehalem kernels, not the CPU's own
    "OPENBLAS_CORETYPE": "Nehalem",
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # cuBLAS: deterministic GEMMs under CUDA
}
NATIVE_SWITCH = "NORMBOUNDS_NATIVE_KERNELS"


def native_kernels() -> bool:
    """True when the user chose the CPU's own (machine-dependent) kernels."""
    return os.environ.get(NATIVE_SWITCH, "") == "1"


def pin_kernels() -> None:
    """Set KERNEL_ENV (overriding the environment) unless native kernels were chosen.
    Called by `normbounds.pipeline`'s __init__; call it before importing torch, since a
    library that has loaded or run a kernel has already read its variable."""
    global _PINNED_BEFORE_TORCH
    if _PINNED_BEFORE_TORCH is None:  # the first call decides: was torch there before it?
        _PINNED_BEFORE_TORCH = "torch" not in sys.modules
    if not native_kernels():
        os.environ.update(KERNEL_ENV)


def kernels_label() -> str:
    """'native', or the pinned settings themselves: part of a training run's fingerprint,
    so a checkpoint trained under other pins is never resumed."""
    if native_kernels():
        return "native"
    return "pinned:" + ",".join(f"{k}={v}" for k, v in KERNEL_ENV.items())


def torch_loaded_first() -> bool:
    """True when torch is loaded and `pin_kernels` did not run before it was."""
    return "torch" in sys.modules and not _PINNED_BEFORE_TORCH


_PINNED_BEFORE_TORCH: bool | None = None  # set by the first pin_kernels()
