"""benchmarks/profile_repro.py: the stage projection and the medians, by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("profile_repro",
                                               REPO / "benchmarks" / "profile_repro.py")
profile = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(profile)


def _version(loop: float) -> dict:
    width = {"data": 0.01, "forward": 0.03, "backward": 0.05, "step": 0.01, "loop": loop,
             "save": 0.5, "save_resume": 0.25, "errors": 1.0, "fourier": 0.5,
             "lanczos": 2.0, "bounds_rest": 0.5}
    return {"import": 2.0, "prepare": 3.0, "m": 100, "batch": 32, "epochs": 10, "saves": 4,
            "widths": {"3-8": width}}


def test_the_projection_counts_every_step_save_and_checkpoint():
    stages = profile._stages(_version(loop=0.1))
    # 4 batches an epoch (100 / 32, rounded up), 10 epochs, 4 saves and 3 resume states
    assert stages["train@3-8"] == pytest.approx(2.0 + 10 * 4 * 0.1 + 4 * 0.5 + 3 * 0.25)
    assert stages["evaluate@3-8"] == pytest.approx(2.0 + 4 * (1.0 + 0.5 + 2.0 + 0.5))
    assert stages["check"] == 2.0 and stages["prepare"] == 5.0


def test_medians_are_taken_key_by_key_and_counts_kept():
    runs = [{"a": 1.0, "n": 7, "w": {"x": 3.0}}, {"a": 5.0, "n": 7, "w": {"x": 1.0}},
            {"a": 2.0, "n": 7, "w": {"x": 2.0}}]
    assert profile._median(runs) == {"a": 2.0, "n": 7, "w": {"x": 2.0}}


def test_the_report_prints_ratios_not_seconds(capsys):
    profile.report(_version(loop=0.2), _version(loop=0.1), "abc1234")
    out = capsys.readouterr().out
    loop = next(line for line in out.splitlines() if line.split()[:2] == ["3-8", "loop"])
    assert loop.split()[1:] == ["loop", "200.0%", "100.0%", "0.50"]  # against 0.1 s of phases
    train = next(line for line in out.splitlines() if line.strip().startswith("train@3-8"))
    # (2 + 4 + 2.75) / (2 + 8 + 2.75) = 0.686...
    assert train.split()[-1] == "0.69"
