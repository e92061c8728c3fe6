"""Damaged, hostile and oversized inputs, each through the entry point a user would use.

The session's trained repository (tests/e2e/conftest.py) is copied once for the module.
Every case asserts the exit status, a one-line message naming the key or file,
no traceback, and that nothing outside the stage's own outputs changed. Cases
that damage the run then check that a plain `dvc repro` brings back every file
byte for byte as it was.
"""

from __future__ import annotations

import errno
import json
import os
import runpy
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from normbounds import io as nio
from normbounds.pipeline.config import load_params

from pipeline_helpers import (
    TRAINED_PARAMS,
    copy_repo,
    dvc,
    tiny_params,
    tree_digest,
    write_params,
)

ENTRY = "2-2-0"
PARAMS = TRAINED_PARAMS
CKPTS = Path("checkpoints") / ENTRY


@pytest.fixture(scope="module")
def repo(trained_repo, tmp_path_factory) -> Path:
    return copy_repo(trained_repo, tmp_path_factory.mktemp("hostile") / "repo")


@pytest.fixture(scope="module")
def baseline(repo: Path) -> dict[str, str]:
    return tree_digest(repo)


def _stage(repo: Path, script: str, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """`python stages/<script> [args]` in this process: (exit status, stderr)."""
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "argv", [script, *args])
    try:
        runpy.run_path(str(repo / "stages" / script), run_name="__main__")
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    return code, capsys.readouterr().err


def _one_line(err: str, *fragments: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def _recovers(repo: Path, baseline: dict[str, str]) -> None:
    """A clean `dvc repro` brings every output back byte for byte, and DVC agrees."""
    dvc(repo, "repro")
    assert tree_digest(repo) == baseline
    assert "up to date" in dvc(repo, "status").stdout


def _last(repo: Path) -> Path:
    return sorted((repo / CKPTS).glob("epoch_*.pt"))[-1]


@pytest.mark.e2e
def test_shell_characters_in_the_grid_never_reach_a_shell(repo, baseline, tmp_path):
    marker = tmp_path / "injected"
    lock = (repo / "dvc.lock").read_bytes()
    write_params(repo, tiny_params(grid={"widths": [f"2;touch {marker};true"]},
                                   train=PARAMS["train"]))
    try:
        proc = dvc(repo, "repro", check=False)
    finally:
        write_params(repo, PARAMS)
    assert proc.returncode != 0 and not marker.exists()
    assert "grid.widths" in proc.stderr and "Traceback" not in proc.stderr
    value = f'grid.widths=["2;touch {marker};true"]'
    proc = dvc(repo, "exp", "run", "-S", value, check=False)
    assert proc.returncode != 0 and not marker.exists()
    assert "grid.widths" in proc.stderr
    # `dvc exp run` checks out the outputs of the pipeline its params resolve to, which
    # here has no train stage: the cached checkpoints come back with the review loop's
    # return (docs/pipeline.md)
    subprocess.run(["git", "checkout", "--", "params.yaml"], cwd=repo, check=True)
    dvc(repo, "checkout")
    assert tree_digest(repo) == baseline and (repo / "dvc.lock").read_bytes() == lock


def _flip_weight_byte(path: Path) -> None:
    """Change one byte inside the largest member (tensor data) of a checkpoint's zip."""
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = (int.from_bytes(raw[info.header_offset + o:info.header_offset + o + 2],
                                          "little") for o in (26, 28))
    at = info.header_offset + 30 + name_len + extra_len + info.file_size // 2
    raw[at] ^= 0x40
    path.write_bytes(bytes(raw))


def _nan_weights(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    key = next(iter(state["model"]))
    state["model"][key].view(-1)[0] = float("nan")
    torch.save(state, path)


class _Payload:
    """Unpickling this would run `touch` (a weights-only load refuses it)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


DAMAGE = {
    "flipped byte": (_flip_weight_byte, "fails its CRC check"),
    "non-finite weights": (_nan_weights, "hold NaN or infinite values"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_checkpoint_is_refused_then_retrained(repo, baseline, case, monkeypatch,
                                                        capsys):
    damage, fragment = DAMAGE[case]
    path = _last(repo)
    damage(path)
    code, err = _stage(repo, "evaluate.py", monkeypatch, capsys, ENTRY)
    assert code == 1
    _one_line(err, str(CKPTS / path.name), fragment)
    _recovers(repo, baseline)


@pytest.mark.e2e
def test_a_code_carrying_pickle_is_refused_without_running(repo, baseline, tmp_path,
                                                           monkeypatch, capsys):
    marker = tmp_path / "ran"
    path = _last(repo)
    torch.save({"model": _Payload(marker)}, path)
    code, err = _stage(repo, "evaluate.py", monkeypatch, capsys, ENTRY)
    assert code == 1 and not marker.exists()
    _one_line(err, path.name, "not a file of this project")
    assert "weights_only=False" not in err
    _recovers(repo, baseline)
    assert not marker.exists()


@pytest.mark.e2e
def test_a_missing_checkpoint_in_the_middle_is_named_then_rewritten(repo, baseline,
                                                                    monkeypatch, capsys):
    (repo / CKPTS / "epoch_0001.pt").unlink()
    code, err = _stage(repo, "evaluate.py", monkeypatch, capsys, ENTRY)
    assert code == 1
    _one_line(err, str(CKPTS), "epoch(s) [1] missing")
    _recovers(repo, baseline)


@pytest.mark.e2e
def test_an_edited_stats_file_is_refused(repo, baseline, monkeypatch, capsys):
    stats_path = repo / "data" / "prepared" / "stats.json"
    original = stats_path.read_bytes()
    stats = json.loads(original)
    stats["P"] *= 100
    stats_path.write_text(json.dumps(stats))
    code, err = _stage(repo, "evaluate.py", monkeypatch, capsys, ENTRY)
    assert code == 1
    _one_line(err, "stats.json: P = ", "does not match the prepared training data")
    _recovers(repo, baseline)


@pytest.mark.e2e
def test_a_failed_switch_to_a_new_config_keeps_the_old_run_whole(repo, baseline, monkeypatch,
                                                                 capsys):
    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", str(src))

    write_params(repo, tiny_params(train={**PARAMS["train"], "lr": 0.02}))
    monkeypatch.setattr(os, "replace", refuse)
    try:
        code, err = _stage(repo, "train.py", monkeypatch, capsys, ENTRY)
    finally:
        monkeypatch.undo()
        write_params(repo, PARAMS)
    assert code == 1
    _one_line(err, str(CKPTS), "permission denied")
    assert tree_digest(repo) == baseline  # not one checkpoint gone


@pytest.mark.e2e
def test_a_full_disk_is_one_line_and_damages_nothing(repo, baseline, monkeypatch, capsys):
    last = _last(repo)
    last.unlink()  # the train stage must write it again, and the disk is full

    def full(obj, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(nio, "save_torch", full)
    monkeypatch.setattr("normbounds.pipeline.checkpoints.save_torch", full)
    code, err = _stage(repo, "train.py", monkeypatch, capsys, ENTRY)
    assert code == 1
    # a finished run keeps no resume state: training starts again from epoch 0, whose
    # resume state is the first file it writes
    _one_line(err, "resume.pt", "no space left on the device")
    monkeypatch.undo()
    assert {k: v for k, v in tree_digest(repo).items() if k != str(CKPTS / last.name)} == {
        k: v for k, v in baseline.items() if k != str(CKPTS / last.name)}
    _recovers(repo, baseline)


@pytest.mark.e2e
def test_a_results_table_without_a_column_writes_no_figure(repo, baseline, monkeypatch,
                                                          capsys):
    csv = repo / "results" / f"{ENTRY}.csv"
    original = csv.read_bytes()
    lines = original.decode().splitlines()
    header = lines[0].split(",")
    drop = header.index("graf")
    csv.write_text("\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != drop)
                             for line in lines) + "\n")
    try:
        code, err = _stage(repo, "figures.py", monkeypatch, capsys)
    finally:
        csv.write_bytes(original)
    assert code == 1
    _one_line(err, f"results/{ENTRY}.csv", "missing column(s) ['graf']")
    assert tree_digest(repo) == baseline  # every figure and table as it was


def _params_text(repo: Path, text: str) -> None:
    (repo / "params.yaml").write_text(text)


LOADER = {
    "empty file": ("", "params.yaml: the file is empty"),
    "duplicate key": (yaml.safe_dump(PARAMS, sort_keys=False) + "bound: {gamma: 2.0}\n",
                      "key 'bound' appears twice"),
    "huge epochs": (yaml.safe_dump(tiny_params(train={"epochs": 10**12})),
                    "train.epochs = 1000000000000 is invalid: must be at most"),
    "huge width": (yaml.safe_dump(tiny_params(grid={"widths": [10**9]})),
                   "grid.widths = [1000000000] is invalid"),
    "deep dense": (yaml.safe_dump(tiny_params(model={"family": "fc"},
                                              grid={"depths": [3_000_000]})),
                   "grid.depths = [3000000] is invalid: must be at most"),
    "seed 2^32": (yaml.safe_dump(tiny_params(grid={"seeds": [2**32]})),
                  "grid.seeds = [4294967296] is invalid: must be at most 4,294,967,295"
                  " (NumPy's seeds are 32-bit)"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(LOADER))
def test_bad_params_files_are_one_line(repo, baseline, case, monkeypatch, capsys):
    text, fragment = LOADER[case]
    _params_text(repo, text)
    try:
        code, err = _stage(repo, "check.py", monkeypatch, capsys)
    finally:
        write_params(repo, PARAMS)
    assert code == 1
    _one_line(err, fragment)
    assert tree_digest(repo) == baseline


@pytest.mark.e2e
def test_a_file_as_data_root_is_one_line(repo, baseline, monkeypatch, capsys):
    write_params(repo, tiny_params(data={"dataset": "mnist", "root": "params.yaml",
                                         "download": True}))
    try:
        code, err = _stage(repo, "prepare.py", monkeypatch, capsys)
    finally:
        write_params(repo, PARAMS)
    assert code == 1
    _one_line(err, "data.root = 'params.yaml' is a file, not a folder")
    assert tree_digest(repo) == baseline


@pytest.mark.e2e
def test_milestones_after_the_last_epoch_warn(repo, monkeypatch, capsys):
    write_params(repo, tiny_params(train={"epochs": 3,
                                                                "milestones": [2, 9]}))
    try:
        code, err = _stage(repo, "check.py", monkeypatch, capsys)
    finally:
        write_params(repo, PARAMS)
    assert code == 0
    assert "warning: params.yaml: train.milestones [9] lie after train.epochs = 3" in err
    # every other stage reads the same params without repeating it
    write_params(repo, tiny_params(train={"epochs": 3, "milestones": [2, 9]}))
    try:
        assert load_params(repo / "params.yaml").train.epochs == 3
    finally:
        write_params(repo, PARAMS)
    assert "lie after" not in capsys.readouterr().err


def test_atomic_writes_get_the_umask_permissions(tmp_path, monkeypatch):
    """A normal write under umask 027 gives 0640; mkstemp alone would give 0600."""
    old = os.umask(0o027)
    monkeypatch.setattr(nio, "_UMASK", 0o027)
    try:
        nio.write_text("x\n", tmp_path / "a.txt")
        nio.save_torch({"w": torch.ones(1)}, tmp_path / "b.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.pt").stat().st_mode & 0o777 == 0o640


@pytest.mark.e2e
def test_an_unconverged_estimate_is_one_line(repo, baseline, monkeypatch, capsys):
    write_params(repo, tiny_params(train=PARAMS["train"],
                                   bound={"lipschitz": "estimate", "lanczos_max_steps": 1}))
    try:
        code, err = _stage(repo, "evaluate.py", monkeypatch, capsys, ENTRY)
    finally:
        write_params(repo, PARAMS)
    assert code == 1
    _one_line(err, "bound.lipschitz = estimate: Lanczos did not reach bound.lanczos_tol",
              "bound.lanczos_max_steps = 1")
    assert tree_digest(repo) == baseline
