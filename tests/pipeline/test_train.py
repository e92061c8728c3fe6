"""Training: checkpoints, round trips, resume, config changes, non-finite loss."""

from __future__ import annotations

import json

import pytest
import torch

from normbounds.errors import ArtifactError
from normbounds.pipeline import checkpoints
from normbounds.pipeline.checkpoints import save_epochs
from normbounds.pipeline.data import Split
from normbounds.pipeline.models import Arch
from normbounds.pipeline.train import TrainingError, train_entry, write_history

from pipeline_helpers import (
    TINY_ENTRY,
    Killed,
    folder_bytes,
    killed_after,
    tiny_run_cfg,
    train_tiny,
)


def test_save_epochs():
    assert save_epochs(25, 10) == [0, 1, 10, 20, 25]
    assert save_epochs(3, 5) == [0, 1, 3]


def test_checkpoints_round_trip(tmp_path):
    cfg = tiny_run_cfg()
    history = train_tiny(cfg, tmp_path)
    assert [e for e, _ in checkpoints.list_epochs(tmp_path)] == [0, 1, 2, 3]
    assert [row[0] for row in history] == [1, 2, 3]
    assert [row[2] for row in history] == pytest.approx([0.01, 0.01, 0.001])  # milestone 2
    model, meta = checkpoints.load(tmp_path / "epoch_0003.pt")
    assert meta["epoch"] == 3 and meta["history"] == history
    assert meta["config"]["train"]["lr"] == 0.01 and meta["arch"]["width"] == 3
    state = torch.load(tmp_path / "epoch_0003.pt", weights_only=True)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state["model"].items())
    first, _ = checkpoints.load(tmp_path / "epoch_0000.pt")
    assert not torch.equal(first.head.weight, model.head.weight)  # training moved it


def test_resume_is_bit_identical(tmp_path):
    cfg = tiny_run_cfg()
    train_tiny(cfg, tmp_path / "full")
    with pytest.raises(Killed):
        train_tiny(cfg, tmp_path / "cut", log=killed_after(1))
    assert checkpoints.resume_path(tmp_path / "cut").is_file()  # an unfinished run keeps it
    messages: list[str] = []
    train_tiny(cfg, tmp_path / "cut", messages)
    assert messages[0] == "train@2-3-0: resuming from epoch 1 of 3"
    # file for file, no resume.pt
    assert folder_bytes(tmp_path / "cut") == folder_bytes(tmp_path / "full")
    assert not checkpoints.resume_path(tmp_path / "full").exists()


def test_a_kill_between_the_resume_state_and_its_checkpoint(tmp_path):
    cfg = tiny_run_cfg()
    train_tiny(cfg, tmp_path / "full")
    with pytest.raises(Killed):
        train_tiny(cfg, tmp_path / "cut", log=killed_after(2))
    (tmp_path / "cut" / "epoch_0002.pt").unlink()  # resume.pt of epoch 2 was written first
    messages: list[str] = []
    train_tiny(cfg, tmp_path / "cut", messages)
    assert messages[0] == "train@2-3-0: resuming from epoch 2 of 3"
    assert folder_bytes(tmp_path / "cut") == folder_bytes(tmp_path / "full")


def test_a_damaged_checkpoint_of_a_finished_run_retrains_it_identically(tmp_path):
    train_tiny(tiny_run_cfg(), tmp_path)
    before = folder_bytes(tmp_path)
    path = tmp_path / "epoch_0002.pt"
    path.write_bytes(path.read_bytes()[:500])
    messages: list[str] = []
    train_tiny(tiny_run_cfg(), tmp_path, messages)
    assert messages[0].endswith("epoch_0002.pt: fails its CRC check; the file is truncated or"
                                " corrupt: it and the 1 later checkpoint(s) will be written"
                                " again")
    assert messages[1] == f"{tmp_path / 'resume.pt'}: missing: training again from the start"
    assert folder_bytes(tmp_path) == before


def test_a_checkpoint_holds_the_weights_and_little_else(tmp_path):
    arch = Arch((1, 16, 16), 10, 2, 64)
    train_entry(tiny_run_cfg(epochs=2), TINY_ENTRY, _data_16(), arch, tmp_path, "digest",
                log=lambda _: None)
    weights = sum(t.numel() * t.element_size() for t in
                  torch.load(tmp_path / "epoch_0001.pt", weights_only=True)["model"].values())
    for epoch in (0, 1, 2):
        size = (tmp_path / f"epoch_{epoch:04d}.pt").stat().st_size
        assert size <= 1.1 * weights, (epoch, size, weights)
    state = torch.load(tmp_path / "epoch_0001.pt", weights_only=True)
    assert set(state) == {"epoch", "arch", "config", "history", "model"}


def _data_16(n: int = 40) -> Split:
    gen = torch.Generator().manual_seed(0)
    return Split(torch.rand(n, 1, 16, 16, generator=gen), torch.arange(n) % 10)


def test_other_config_starts_fresh(tmp_path):
    train_tiny(tiny_run_cfg(epochs=4), tmp_path)
    messages: list[str] = []
    train_tiny(tiny_run_cfg(weight_decay=1e-3), tmp_path, messages)
    assert any("different config (train.epochs: 4 -> 3; train.weight_decay: 0.003 -> 0.001)"
               in m for m in messages)
    assert [e for e, _ in checkpoints.list_epochs(tmp_path)] == [0, 1, 2, 3]  # no stale 4


def test_non_finite_loss_names_entry_and_epoch(tmp_path):
    with pytest.raises(TrainingError, match=r"train@2-3-0: the train loss became (nan|inf) at"
                                            r" epoch 1"):
        train_tiny(tiny_run_cfg(lr=1e12, momentum=0.0), tmp_path)
    assert [e for e, _ in checkpoints.list_epochs(tmp_path)] == [0]  # the good one stays


def test_truncated_checkpoint_is_named(tmp_path):
    train_tiny(tiny_run_cfg(epochs=1), tmp_path)
    path = tmp_path / "epoch_0001.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ArtifactError, match=r"epoch_0001.pt: fails its CRC check; the file is"):
        checkpoints.load(path)


def test_history_files(tmp_path):
    """DVCLive's layout, written as one folder: an older log is replaced whole."""
    live = tmp_path / "logs" / "2-3-0"
    (live / "plots" / "metrics").mkdir(parents=True)
    (live / "plots" / "metrics" / "stale.tsv").write_text("old\n")
    write_history([[1, 0.5, 0.01], [2, 0.25, 0.001]], live)
    assert (live / "plots" / "metrics" / "train_loss.tsv").read_text().splitlines() == [
        "step\ttrain_loss", "1\t0.5", "2\t0.25"]
    assert json.loads((live / "metrics.json").read_text()) == {"train_loss": 0.25, "step": 2}
    assert sorted(p.name for p in (live / "plots" / "metrics").iterdir()) == ["train_loss.tsv"]
    assert sorted(p.name for p in live.parent.iterdir()) == ["2-3-0"]  # nothing left aside
