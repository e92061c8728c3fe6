"""Pinned CPU kernels through the train stage: the same checkpoint bytes whatever the
thread count or the CPU kernel level the environment asks for (docs/reproducibility.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from normbounds.pipeline.config import Entry
from normbounds.pipeline.paths import Paths

from pipeline_helpers import copy_repo, own_code, subprocess_env, tiny_params, write_params

ENTRY = Entry(2, 3, 0)


def _stage(work: Path, *args: str, **env: str) -> None:
    proc = subprocess.run([sys.executable, *args], cwd=work,
                          env=subprocess_env(**own_code(work), **env),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _train(work: Path, threads: int, **env: str) -> dict[str, bytes]:
    """Train ENTRY for 3 epochs in a fresh process; the checkpoint files' bytes."""
    write_params(work, tiny_params(base={"threads": threads}, grid={"widths": [3]},
                                   train={"epochs": 3, "milestones": [2]}))
    _stage(work, "stages/train.py", ENTRY.name, **env)
    folder = Paths(work).checkpoints(ENTRY)
    out = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    for path in folder.iterdir():
        path.unlink()
    return out


@pytest.fixture(scope="module")
def prepared(trained_repo, tmp_path_factory) -> Path:
    """A copy of the session's trained repository: its prepared data, checkpoints cleared."""
    return copy_repo(trained_repo, tmp_path_factory.mktemp("kernels") / "repo")


@pytest.mark.e2e
def test_threads_and_the_cpu_level_of_the_environment_change_no_byte(prepared: Path):
    """A machine with 1 or 2 threads to offer, or another CPU level asked for in the
    environment: base.threads and the pinned kernels decide, so the bytes agree."""
    reference = _train(prepared, threads=2, OMP_NUM_THREADS="2", MKL_NUM_THREADS="2")
    assert sorted(reference) == ["epoch_0000.pt", "epoch_0001.pt", "epoch_0002.pt",
                                 "epoch_0003.pt"]
    assert _train(prepared, threads=2, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1") == reference
    other_cpu = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                 "MKL_CBWR": "AUTO", "OMP_NUM_THREADS": "1"}
    assert _train(prepared, threads=2, **other_cpu) == reference


