"""Helpers of the pipeline and end-to-end tests: tiny data sets in torchvision's own file
formats, tiny configs, pipeline repositories and DVC calls (the full install's: PyYAML,
DVC). The base install's tests (tests/measure/) use helpers.py only."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from filelock import FileLock

from normbounds.pipeline.config import Entry, parse_params
from normbounds.pipeline.data import Split
from normbounds.pipeline.models import Arch
from normbounds.pipeline.train import train_entry

from helpers import write_mnist_files

REPO = Path(__file__).resolve().parents[1]


def write_mnist(root: Path, folder: str, n_train: int, n_test: int, seed: int = 0) -> dict:
    """MNIST-format files under root/<folder>/raw; returns the arrays written."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        out[split] = (images, labels)
    write_mnist_files(root, out["train"], out["t10k"], folder)
    return out


def write_cifar10(root: Path, per_batch: int, seed: int = 0) -> dict:
    """CIFAR-10 python-format pickles under root/cifar-10-batches-py."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8)  # CHW rows
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        with open(base / name, "wb") as fh:
            pickle.dump({"data": data, "labels": labels}, fh)
        out[name] = (data, labels)
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh)
    return out


def tiny_params(**sections: dict) -> dict:
    """A params mapping for a fast run; sections override the tiny defaults key by key."""
    raw = {
        # one thread: the bytes are the same with two (tests/e2e/test_pinned_kernels.py), and
        # two test workers (pytest -n 2) then share this 2-core machine without oversubscribing
        "base": {"device": "cpu", "threads": 1},
        "data": {"dataset": "mnist5k", "train_size": 200, "test_size": 100},
        "model": {"kernel_size": 2, "stride": 1},
        "grid": {"depths": [2], "widths": [2, 3], "seeds": [0]},
        "train": {"epochs": 2, "batch_size": 50, "lr": 0.01, "milestones": [1],
                  "save_every": 1},
        "bound": {},
    }
    for name, values in sections.items():
        raw[name] = {**raw[name], **values}
    return raw


# the session's trained repository (tests/e2e/conftest.py): CONV-2-2 and CONV-2-3, 2 epochs
# on 200 mnist5k digits, every stage
TRAINED_PARAMS = tiny_params()

# Everything a pipeline run writes; a failed run must leave all of it as it was.
OUTPUT_DIRS = ("data", "checkpoints", "logs", "metrics", "results", "plots", "reports")


def make_pipeline(work: Path, params: dict, *folders: str) -> Path:
    """A fresh git + DVC repository holding this pipeline (plus `folders`) and `params`."""
    work.mkdir(parents=True)
    for name in ("stages", "src", *folders):
        shutil.copytree(REPO / name, work / name, symlinks=True, ignore=shutil.ignore_patterns(
            "__pycache__", "*.egg-info", "dvc.lock", "cache", "tmp", *OUTPUT_DIRS))  # code, params
    shutil.copy(REPO / "dvc.yaml", work / "dvc.yaml")
    write_params(work, params)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    dvc(work, "init", "-q")
    return work


def git(work: Path, *args: str) -> str:
    """`git <args>` in `work` (a committer named), its output; a failure fails the test."""
    proc = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          cwd=work, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def copy_repo(source: Path, dest: Path) -> Path:
    """A copy of a pipeline repository with its git history and DVC cache (not DVC's
    temporary folder: its locks and state are DVC's to remake, and another test may be
    using the source)."""
    shutil.copytree(source, dest, symlinks=True,
                    ignore=lambda folder, names: ["tmp"] if Path(folder).name == ".dvc" else [])
    return dest


def built_once(tmp_path_factory, worker_id: str, name: str,
               build: Callable[[Path], None]) -> Path:
    """`build(work)` run once per test run, in the folder the pytest-xdist workers share
    (the xdist documentation's pattern): the first worker to ask builds it, the others
    wait on the lock and reuse it. Never modify the result: copy it (copy_repo)."""
    root = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        root = root.parent
    work, done = root / name / "repo", root / f"{name}.done"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            build(work)
            done.touch()
    return work


def write_params(work: Path, params: dict) -> None:
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def subprocess_env(**extra: str) -> dict[str, str]:
    """This interpreter's folder first on PATH (DVC stages call `python`), no analytics."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "DVC_NO_ANALYTICS": "1", **extra}


def own_code(work: Path) -> dict[str, str]:
    """PYTHONPATH for the stages of the pipeline at (or above) `work`: its own src/, so a
    run digests and runs the copy's code, at the copy's path (not the installed tree's)."""
    for root in (work, *work.parents):
        if (root / "src" / "normbounds").is_dir():
            return {"PYTHONPATH": str(root / "src")}
    return {}


def dvc(work: Path, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """Run `dvc <args>` in `work`, its stages on its own code; with check, a non-zero exit
    fails the test with its output."""
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=work,
                          env=subprocess_env(**{**own_code(Path(work)), **env}),
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def tree_digest(work: Path) -> dict[str, str]:
    """sha256 of every file under the output folders, by relative path."""
    out = {}
    for folder in OUTPUT_DIRS:
        for path in sorted((work / folder).rglob("*")):
            if path.is_file():
                out[str(path.relative_to(work))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# One tiny run trained in process (well under a second): the training tests' unit.
TINY_ARCH = Arch((1, 8, 8), 10, 2, 3)
TINY_ENTRY = Entry(2, 3, 0)


def tiny_split(n: int = 60) -> Split:
    gen = torch.Generator().manual_seed(0)
    return Split(torch.rand(n, 1, 8, 8, generator=gen), torch.arange(n) % 10)


def tiny_run_cfg(**train):
    """3 epochs, a checkpoint every epoch, a milestone at 2; `train` overrides."""
    return parse_params(tiny_params(train={"epochs": 3, "batch_size": 16, "milestones": [2],
                                           "save_every": 1, **train}))


def train_tiny(cfg, folder: Path, messages: list[str] | None = None, log=None) -> list:
    """train_entry of TINY_ENTRY into `folder`; its log lines go to `messages` (or `log`)."""
    if log is None:
        log = messages.append if messages is not None else (lambda _: None)
    return train_entry(cfg, TINY_ENTRY, tiny_split(), TINY_ARCH, folder, "digest", log=log)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of a run folder by name: equal bytes are equal DVC hashes."""
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


class Killed(Exception):
    """Raised by killed_after's log: training stops as a kill would."""


def killed_after(epoch: int):
    """A log that stops training right after the checkpoint of `epoch` is saved."""
    def log(message: str) -> None:
        if f"epoch {epoch}/" in message:
            raise Killed
    return log
