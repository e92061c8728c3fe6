"""Pinned CPU kernels: the same checkpoint bytes whatever the thread count or the CPU
kernel level the environment asks for (docs/reproducibility.md)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from normbounds.pipeline.config import Entry
from normbounds.pipeline.imports import REPO
from normbounds.reproducibility import KERNEL_ENV, NATIVE_SWITCH

from pipeline_helpers import subprocess_env, tiny_params

ENTRY = Entry(2, 3, 0)


def _pinned_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """`python -c code` in a fresh process with the package's pins (NATIVE_SWITCH
    unset) and `env` asking for other kernels."""
    full = {k: v for k, v in subprocess_env(**env).items() if k != NATIVE_SWITCH}
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, check=True)


def test_the_pipeline_pins_the_kernels_before_torch_loads():
    code = ("import os, normbounds.pipeline, torch; torch.ones(3).sum();"
            " print(torch.backends.cpu.get_cpu_capability(),"
            " os.environ['ONEDNN_MAX_CPU_ISA'], os.environ['MKL_CBWR'])")
    out = _pinned_python(code, ONEDNN_MAX_CPU_ISA="AVX512_CORE",
                         ATEN_CPU_CAPABILITY="avx2").stdout.split()
    assert out == ["DEFAULT", KERNEL_ENV["ONEDNN_MAX_CPU_ISA"], KERNEL_ENV["MKL_CBWR"]]


def test_mkl_runs_the_pinned_branch_on_this_cpu():
    """MKL falls back to AUTO (the CPU's own code path) for a branch the CPU's vendor is
    not served by; its verbose log names the branch a product really ran on."""
    code = ("import normbounds.pipeline, torch; a = torch.ones(64, 64, dtype=torch.float64);"
            " torch.set_num_threads(1); a @ a")
    out = _pinned_python(code, MKL_VERBOSE="1", MKL_CBWR="AUTO").stdout  # MKL logs here
    assert "DGEMM" in out and f"CNR:{KERNEL_ENV['MKL_CBWR']} " in out


def test_openblas_runs_the_pinned_kernels_on_this_cpu():
    """scipy's OpenBLAS (Lanczos' tridiagonal eigensolver) names the kernels it loaded."""
    code = "import normbounds.pipeline, scipy.linalg"
    out = _pinned_python(code, OPENBLAS_VERBOSE="2", OPENBLAS_CORETYPE="Haswell").stderr
    cores = [line for line in out.splitlines() if "Core:" in line]
    assert cores and all(line.strip() == f"Core: {KERNEL_ENV['OPENBLAS_CORETYPE']}"
                         for line in cores)


@pytest.mark.slow  # fresh Pythons
def test_torch_imported_first_is_one_line_error(tmp_path: Path):
    """A program that loads torch before normbounds.pipeline gets unpinned kernels: the
    stage set-up refuses, naming the fix."""
    code = ("import torch, sys; from normbounds.pipeline.config import BaseConfig;"
            " from normbounds.pipeline.runtime import run_stage, setup_torch;"
            " run_stage(lambda: setup_torch(BaseConfig()))")
    env = {k: v for k, v in subprocess_env().items() if k != NATIVE_SWITCH}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr == ("error: torch was imported before normbounds.pipeline, so its CPU"
                           " kernels are not pinned; import normbounds.pipeline first, or set"
                           f" {NATIVE_SWITCH}=1 to accept machine-dependent results\n")
    env[NATIVE_SWITCH] = "1"  # accepted with native kernels
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path).returncode == 0


@pytest.mark.slow  # a fresh Python
def test_stage_set_up_is_deterministic_without_loading_inductor(tmp_path: Path):
    """setup_torch turns deterministic algorithms on (errors, not warnings) and leaves
    torch._inductor unloaded: importing it costs every stage 2 s (precision.compiled sets
    inductor's flag when it is needed)."""
    code = ("import sys, normbounds.pipeline, torch;"
            " from normbounds.pipeline.config import BaseConfig;"
            " from normbounds.pipeline.runtime import setup_torch; setup_torch(BaseConfig());"
            " print(torch.are_deterministic_algorithms_enabled(),"
            " torch.is_deterministic_algorithms_warn_only_enabled(),"
            " 'torch._inductor.config' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env(),
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "False", "False"]


def test_base_threads_is_validated():
    from normbounds.errors import ConfigError
    from normbounds.pipeline.config import parse_params

    with pytest.raises(ConfigError, match=r"base.threads = 0 is invalid: must be >= 1"):
        parse_params(tiny_params(base={"threads": 0}))
    assert os.environ.get("ONEDNN_MAX_CPU_ISA") is not None  # set by `import normbounds`


@pytest.mark.parametrize("stage", sorted(p.name for p in (REPO / "stages").glob("*.py")))
def test_every_stage_imports_the_pipeline_before_anything_else(stage: str):
    """The pins act only on libraries that load after them: normbounds.io loads torch and
    numpy (and so OpenBLAS), so a stage that imported it first computed its study fits with
    the CPU's own OpenBLAS kernels (the last digits of studies/depth/metrics/study.json)."""
    tree = ast.parse((REPO / "stages" / stage).read_text())
    modules = [alias.name if isinstance(node, ast.Import) else node.module
               for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
               for alias in node.names]
    first = next(name for name in modules if name.split(".")[0] not in sys.stdlib_module_names)
    assert first == "normbounds.pipeline"  # as `import normbounds.pipeline`
