"""The GPU path (`pytest -m cuda`, run by benchmarks/gpu_check.py): skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from normbounds.measure.bounds import compute
from normbounds.measure.lipschitz import conv_sigma
from normbounds.pipeline.config import Entry
from normbounds.pipeline.data import Split
from normbounds.pipeline.models import Arch, GridNet
from normbounds.pipeline.runtime import setup_torch
from normbounds.pipeline.train import train_entry

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")]


def _train(cfg, folder):
    setup_torch(cfg.base)
    arch = Arch((1, 28, 28), 10, 2, 3)
    gen = torch.Generator().manual_seed(0)
    data = Split(torch.rand(64, 1, 28, 28, generator=gen), torch.arange(64) % 10).to("cuda")
    train_entry(cfg, Entry(2, 3, 0), data, arch, folder, "digest", log=lambda _: None)
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_tiny_run_trained_twice_on_the_gpu_gives_byte_identical_checkpoints(tiny_cfg,
                                                                                tmp_path):
    assert _train(tiny_cfg, tmp_path / "a") == _train(tiny_cfg, tmp_path / "b")


def test_gpu_bounds_equal_cpu_bounds():
    torch.manual_seed(0)
    model = GridNet(Arch((1, 12, 12), 10, 2, 4)).eval()
    x = torch.rand(40, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    cpu = compute(model, x)
    gpu = compute(model.to("cuda"), x.to("cuda"))
    for key, value in cpu.items():
        if isinstance(value, float):
            assert gpu[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key


@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (1, 1), (2, 0)])
def test_gpu_sigmas_equal_cpu_sigmas(stride, padding):
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    cpu, _ = conv_sigma(w, (4, 16, 16), stride, padding)
    gpu, _ = conv_sigma(w.to("cuda"), (4, 16, 16), stride, padding)
    assert gpu.upper == pytest.approx(cpu.upper, rel=1e-9)
    assert gpu.lower == pytest.approx(cpu.lower, rel=1e-9)
