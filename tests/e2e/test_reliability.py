"""Reliability through `dvc repro`: kill and resume, bad params, named run-time errors.

One tiny pipeline (one grid entry) is trained once for the module; every test
leaves it as it found it (same params, same outputs, `dvc status` clean).
"""

from __future__ import annotations

import os
import re
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from pipeline_helpers import (
    built_once,
    copy_repo,
    dvc,
    make_pipeline,
    subprocess_env,
    tiny_params,
    tree_digest,
    write_params,
)

ENTRY = "2-2-0"
EPOCHS = 8
# ~100 SGD steps per epoch, so a kill lands inside an epoch rather than between runs
PARAMS = tiny_params(data={"train_size": 1000}, grid={"widths": [2]},
                     train={"epochs": EPOCHS, "batch_size": 10, "milestones": [4]})
NO_CUDA = {"CUDA_VISIBLE_DEVICES": ""}  # the no-CUDA case holds on a GPU machine too


def _build(work: Path) -> None:
    make_pipeline(work, PARAMS)
    dvc(work, "repro")


# the module's own run is trained once per test run (whichever pytest-xdist worker asks
# first); each worker then works on its own copy, since the tests change it and restore it
@pytest.fixture(scope="session")
def repo(tmp_path_factory, worker_id: str) -> Path:
    built = built_once(tmp_path_factory, worker_id, "reliability", _build)
    return copy_repo(built, tmp_path_factory.mktemp("reliability") / "repo")


def _final_weights(work: Path) -> dict[str, torch.Tensor]:
    path = work / "checkpoints" / ENTRY / f"epoch_{EPOCHS:04d}.pt"
    return torch.load(path, weights_only=True)["model"]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _assert_clean(work: Path, before: dict[str, str]) -> None:
    assert tree_digest(work) == before
    assert "up to date" in dvc(work, "status").stdout


@pytest.mark.e2e
def test_killed_training_resumes_bit_identical(repo: Path):
    reference, before = _final_weights(repo), tree_digest(repo)
    folder = repo / "checkpoints" / ENTRY
    for path in folder.iterdir():
        path.unlink()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", f"train@{ENTRY}"], cwd=repo,
                            env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (folder / "epoch_0003.pt").exists():  # epoch 3 written: now inside epoch 4
        assert proc.poll() is None and time.monotonic() < deadline, "training ended early"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # dvc and the stage's python, mid-epoch
    proc.wait()
    saved = sorted(p.name for p in folder.glob("epoch_*.pt"))
    assert "epoch_0003.pt" in saved and f"epoch_{EPOCHS:04d}.pt" not in saved
    # what a kill during a checkpoint write leaves: a partial temporary file
    (folder / ".epoch_0004.pt.k1ll3d.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")

    # the resume state is written before the checkpoint of its epoch, so it is at the last
    # checkpoint, or one further when the kill fell between the two writes
    resume = torch.load(folder / "resume.pt", weights_only=True)["epoch"]
    assert resume in (int(saved[-1][6:10]), int(saved[-1][6:10]) + 1)
    out = dvc(repo, "repro").stdout
    assert f"train@{ENTRY}: resuming from epoch {resume} of {EPOCHS}" in out
    assert not (folder / ".epoch_0004.pt.k1ll3d.tmp").exists()
    _assert_same_weights(_final_weights(repo), reference)
    _assert_clean(repo, before)  # checkpoints, results, metrics: byte for byte as before


@pytest.mark.e2e
def test_truncated_checkpoint_is_named_then_retrained(repo: Path):
    before = tree_digest(repo)
    path = repo / "checkpoints" / ENTRY / "epoch_0005.pt"
    path.write_bytes(path.read_bytes()[:1000])
    proc = subprocess.run([sys.executable, "stages/evaluate.py", ENTRY], cwd=repo,
                          env=subprocess_env(), capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert "epoch_0005.pt: fails its CRC check" in proc.stderr and "truncated" in proc.stderr
    # a finished run keeps no resume state: the train stage trains again from the start
    # (deterministic) and writes epochs 5..8 again, identically
    out = dvc(repo, "repro").stdout
    assert "epoch_0005.pt: fails its CRC check; the file is truncated or corrupt: it and the 3" \
           " later checkpoint(s) will be written again" in out
    assert "resume.pt: missing: training again from the start" in out
    _assert_clean(repo, before)


@pytest.mark.e2e
def test_non_finite_loss_stops_with_entry_and_epoch(repo: Path):
    before = tree_digest(repo)
    write_params(repo, {**PARAMS, "train": {**PARAMS["train"], "lr": 1e12, "momentum": 0.0}})
    proc = dvc(repo, "repro", check=False)
    assert proc.returncode != 0
    assert re.search(rf"train@{ENTRY}: the train loss became (nan|inf) at epoch 1", proc.stderr)
    # a different config is never resumed: the stage says what changed and starts fresh
    assert "different config (train.lr: 0.01 -> 1000000000000.0;" in proc.stdout
    folder = repo / "checkpoints" / ENTRY
    # the last good checkpoint stays, with the resume state of its epoch
    assert sorted(p.name for p in folder.iterdir()) == ["epoch_0000.pt", "resume.pt"]
    for name in ("results", "metrics", "logs", "plots", "reports"):  # older outputs stay
        assert {k: v for k, v in tree_digest(repo).items() if k.startswith(name)} == {
            k: v for k, v in before.items() if k.startswith(name)}
    write_params(repo, PARAMS)
    dvc(repo, "repro")  # the original config trains again from scratch, same numbers
    _assert_clean(repo, before)


def _lock_without_check(repo: Path) -> dict:
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {name: stage for name, stage in stages.items() if name != "check"}


def _with(section: str, **values) -> dict:
    return {**PARAMS, section: {**PARAMS[section], **values}}


BAD = {
    "unknown key": (_with("train", learning_rate=0.1), "unknown key 'train.learning_rate'"),
    "wrong type": (_with("train", epochs="ten"), "train.epochs = 'ten' is invalid: must be an"),
    "lr <= 0": (_with("train", lr=0.0), "train.lr = 0.0 is invalid: must be > 0"),
    "momentum": (_with("train", momentum=1.0), "train.momentum = 1.0 is invalid: must be in"
                                              " [0, 1)"),
    "weight decay": (_with("train", weight_decay=-0.1), "train.weight_decay = -0.1 is invalid"),
    "epochs": (_with("train", epochs=0), "train.epochs = 0 is invalid: must be >= 1"),
    "widths": (_with("grid", widths=[0]), "grid.widths = [0] is invalid: every value must be >="),
    "depths": (_with("grid", depths=[0]), "grid.depths = [0] is invalid: every value must be >="),
    "kernel": (_with("model", kernel_size=30), "feature map, smaller than its kernel"),
    "stride": (_with("model", stride=0), "model.stride = 0 is invalid: must be >= 1"),
    "milestones": (_with("train", milestones=[4, 2]), "train.milestones = [4, 2] is invalid:"
                                                      " must be strictly increasing"),
    "save_every": (_with("train", save_every=0), "train.save_every = 0 is invalid"),
    "empty grid": (_with("grid", seeds=[]), "grid.seeds = [] is invalid: must list at least"),
    "dataset": (_with("data", dataset="imagenet"), "data.dataset = 'imagenet' is invalid: must"
                                                   " be one of mnist5k, mnist,"),
    "loss": (_with("train", loss="hinge"), "train.loss = 'hinge' is invalid: must be one of"),
    "device": (_with("base", device="tpu"), "base.device = 'tpu' is invalid: must be one of"),
    "lipschitz": (_with("bound", lipschitz="exact"), "bound.lipschitz = 'exact' is invalid"),
    "gamma": (_with("bound", gamma=0.0), "bound.gamma = 0.0 is invalid: must be > 0"),
    "delta": (_with("bound", delta=1.0), "bound.delta = 1.0 is invalid: must be in (0, 1)"),
    "cuda without CUDA": (_with("base", device="cuda"), "base.device = 'cuda' but this machine"
                                                        " has no usable CUDA device"),
    "missing data set": (_with("data", dataset="mnist", root="no/such/folder"),
                         "data set 'mnist' is missing or incomplete under data.root ="
                         " 'no/such/folder': expected MNIST/raw/"),
}


# which stage scripts must refuse each case: a params error stops every stage
STAGES = ["prepare.py", "train.py", "evaluate.py", "figures.py"]
ONLY = {"missing data set": ["prepare.py"],
        "cuda without CUDA": ["prepare.py", "train.py", "evaluate.py"]}


def _run_stage_in_process(repo: Path, script: str, monkeypatch) -> int:
    """What `python stages/<script> <entry>` does, without a fresh interpreter per case."""
    monkeypatch.chdir(repo)
    per_entry = script in ("train.py", "evaluate.py")
    monkeypatch.setattr(sys, "argv", [script, ENTRY] if per_entry else [script])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(repo / "stages" / script), run_name="__main__")
    return exit_info.value.code


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(BAD))
def test_bad_params_stop_every_stage_before_any_work(repo: Path, case: str, monkeypatch,
                                                     capsys):
    params, fragment = BAD[case]
    before = tree_digest(repo)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    write_params(repo, params)
    try:
        for script in ONLY.get(case, STAGES):
            assert _run_stage_in_process(repo, script, monkeypatch) == 1, script
            err = capsys.readouterr().err
            assert err.startswith("error: ") and fragment in err, (script, err)
            assert err.count("\n") == 1  # one line, no traceback
    finally:
        write_params(repo, PARAMS)
    assert tree_digest(repo) == before


@pytest.mark.e2e
@pytest.mark.parametrize("case", ["lr <= 0", "delta", "missing data set", "cuda without CUDA"])
def test_bad_params_through_dvc_repro_change_nothing(repo: Path, case: str):
    # DVC deletes a stage's outputs before running it unless they are `persist: true`
    params, fragment = BAD[case]
    before = tree_digest(repo)
    lock = _lock_without_check(repo)
    write_params(repo, params)
    try:
        proc = dvc(repo, "repro", check=False, **NO_CUDA)
    finally:
        write_params(repo, PARAMS)
    assert proc.returncode != 0
    assert fragment in proc.stderr and "Traceback" not in proc.stderr
    if case == "missing data set":
        assert "set data.download: true" in proc.stderr
    # only the `check` stage may record the new (valid) params: it passed
    assert tree_digest(repo) == before and _lock_without_check(repo) == lock
    dvc(repo, "repro")  # back to the original params: nothing else to do
    assert tree_digest(repo) == before
