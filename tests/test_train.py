"""Training: checkpoints, round trips, resume, config changes, non-finite loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from normbounds import checkpoints, precision
from normbounds.checkpoints import save_epochs
from normbounds.config import Entry, parse_params
from normbounds.data import Split
from normbounds.errors import ArtifactError
from normbounds.models import Arch
from normbounds.train import TrainingError, train_entry, write_history

from conftest import tiny_params

ARCH = Arch((1, 8, 8), 10, 2, 3)
ENTRY = Entry(2, 3, 0)


def _data(n: int = 60) -> Split:
    gen = torch.Generator().manual_seed(0)
    return Split(torch.rand(n, 1, 8, 8, generator=gen), torch.arange(n) % 10)


def _cfg(**train):
    return parse_params(tiny_params(train={"epochs": 3, "batch_size": 16, "milestones": [2],
                                           "save_every": 1, **train}))


def _run(cfg, folder, messages=None):
    log = messages.append if messages is not None else (lambda _: None)
    return train_entry(cfg, ENTRY, _data(), ARCH, folder, "digest", log=log)


def test_save_epochs():
    assert save_epochs(25, 10) == [0, 1, 10, 20, 25]
    assert save_epochs(3, 5) == [0, 1, 3]


def test_checkpoints_round_trip(tmp_path):
    cfg = _cfg()
    history = _run(cfg, tmp_path)
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


class _Killed(Exception):
    pass


def _killed_after(epoch: int):
    """A log that stops training right after the checkpoint of `epoch` is saved."""
    def log(message: str) -> None:
        if f"epoch {epoch}/" in message:
            raise _Killed
    return log


def _bytes(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_resume_is_bit_identical(tmp_path):
    cfg = _cfg()
    _run(cfg, tmp_path / "full")
    with pytest.raises(_Killed):
        train_entry(cfg, ENTRY, _data(), ARCH, tmp_path / "cut", "digest", log=_killed_after(1))
    assert checkpoints.resume_path(tmp_path / "cut").is_file()  # an unfinished run keeps it
    messages: list[str] = []
    _run(cfg, tmp_path / "cut", messages)
    assert messages[0] == "train@2-3-0: resuming from epoch 1 of 3"
    assert _bytes(tmp_path / "cut") == _bytes(tmp_path / "full")  # file for file, no resume.pt
    assert not checkpoints.resume_path(tmp_path / "full").exists()


def test_a_kill_between_the_resume_state_and_its_checkpoint(tmp_path):
    cfg = _cfg()
    _run(cfg, tmp_path / "full")
    with pytest.raises(_Killed):
        train_entry(cfg, ENTRY, _data(), ARCH, tmp_path / "cut", "digest", log=_killed_after(2))
    (tmp_path / "cut" / "epoch_0002.pt").unlink()  # resume.pt of epoch 2 was written first
    messages: list[str] = []
    _run(cfg, tmp_path / "cut", messages)
    assert messages[0] == "train@2-3-0: resuming from epoch 2 of 3"
    assert _bytes(tmp_path / "cut") == _bytes(tmp_path / "full")


def test_a_damaged_checkpoint_of_a_finished_run_retrains_it_identically(tmp_path):
    _run(_cfg(), tmp_path)
    before = _bytes(tmp_path)
    path = tmp_path / "epoch_0002.pt"
    path.write_bytes(path.read_bytes()[:500])
    messages: list[str] = []
    _run(_cfg(), tmp_path, messages)
    assert messages[0].endswith("epoch_0002.pt: fails its CRC check; the file is truncated or"
                                " corrupt: it and the 1 later checkpoint(s) will be written"
                                " again")
    assert messages[1] == f"{tmp_path / 'resume.pt'}: missing: training again from the start"
    assert _bytes(tmp_path) == before


def test_a_checkpoint_holds_the_weights_and_little_else(tmp_path):
    arch = Arch((1, 16, 16), 10, 2, 64)
    train_entry(_cfg(epochs=2), ENTRY, _data_16(), arch, tmp_path, "digest", log=lambda _: None)
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
    _run(_cfg(epochs=4), tmp_path)
    messages: list[str] = []
    _run(_cfg(weight_decay=1e-3), tmp_path, messages)
    assert any("different config (train.epochs: 4 -> 3; train.weight_decay: 0.003 -> 0.001)"
               in m for m in messages)
    assert [e for e, _ in checkpoints.list_epochs(tmp_path)] == [0, 1, 2, 3]  # no stale 4


def test_non_finite_loss_names_entry_and_epoch(tmp_path):
    with pytest.raises(TrainingError, match=r"train@2-3-0: the train loss became (nan|inf) at"
                                            r" epoch 1"):
        _run(_cfg(lr=1e12, momentum=0.0), tmp_path)
    assert [e for e, _ in checkpoints.list_epochs(tmp_path)] == [0]  # the good one stays


def test_truncated_checkpoint_is_named(tmp_path):
    _run(_cfg(epochs=1), tmp_path)
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


def _fake_code(monkeypatch, source, name="train.py"):
    """The files the train stage imports, with src/normbounds/<name> replaced by `source`
    (a file): the fingerprint (train.code_files) digests it under the real file's name."""
    from normbounds import imports, train

    real = imports.stage_files("train")
    swapped = [source if imports.relative(p) == f"src/normbounds/{name}" else p for p in real]
    assert swapped != real
    monkeypatch.setattr(train, "stage_files", lambda stage: swapped)
    monkeypatch.setattr(train, "relative", lambda p: (f"src/normbounds/{name}" if p == source
                                                      else imports.relative(p)))


def test_a_code_change_keeps_the_old_run_aside_and_names_the_file(tmp_path, monkeypatch):
    source = tmp_path / "train_source.py"
    source.write_text("# version 1\n")
    _fake_code(monkeypatch, source)
    folder = tmp_path / "run"
    _run(_cfg(), folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    source.write_text("# version 2\n")
    messages = []
    _run(_cfg(), folder, messages)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith(".run.code-")]
    assert len(aside) == 1  # the old run, byte for byte
    assert {p.name: p.read_bytes() for p in aside[0].iterdir()} == before
    assert any("was trained by other code (src/normbounds/train.py changed): kept in"
               f" {aside[0]}" in m for m in messages)
    assert [e for e, _ in checkpoints.list_epochs(folder)] == [0, 1, 2, 3]  # trained afresh


def test_editing_precision_py_invalidates_a_run(tmp_path, monkeypatch):
    """precision.py changes the trained weights (TF32, bf16), so it is in the fingerprint:
    a run trained before an edit of it is not resumed."""
    source = tmp_path / "precision.py"
    source.write_text((Path(precision.__file__)).read_text())
    _fake_code(monkeypatch, source, "precision.py")
    folder = tmp_path / "run"
    _run(_cfg(), folder)
    source.write_text(source.read_text() + "# an edit\n")
    messages = []
    _run(_cfg(), folder, messages)
    assert any("(src/normbounds/precision.py changed)" in m for m in messages), messages
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(".run.code-")]) == 1


def test_a_code_change_declared_harmless_resumes_the_run(tmp_path, monkeypatch):
    source = tmp_path / "train_source.py"
    source.write_text("# version 1\n")
    _fake_code(monkeypatch, source)
    folder = tmp_path / "run"
    history = _run(_cfg(), folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    source.write_text("# version 2: a comment, no number changes\n")
    monkeypatch.setenv("NORMBOUNDS_HARMLESS_CODE_CHANGE", "1")
    messages = []
    assert _run(_cfg(), folder, messages) == history  # nothing trained again
    assert any("the code changed (src/normbounds/train.py); NORMBOUNDS_HARMLESS_CODE_CHANGE=1"
               " declares it"
               " harmless: resuming from epoch 3" in m for m in messages)
    after = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert {k: v for k, v in after.items() if k != "epoch_0003.pt"} == {
        k: v for k, v in before.items() if k != "epoch_0003.pt"}
    assert not any(p.name.startswith(".run.") for p in tmp_path.iterdir())
    monkeypatch.delenv("NORMBOUNDS_HARMLESS_CODE_CHANGE")
    messages.clear()
    _run(_cfg(), folder, messages)  # adopted for good: the newest checkpoint has the new code
    assert messages == ["train@2-3-0: resuming from epoch 3 of 3"]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == after
