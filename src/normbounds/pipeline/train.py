"""Training one grid entry: SGD + MultiStepLR, checkpoints, resume.

The train set lives on the device once and is batched by index. The only
randomness after initialisation is the data order, drawn from a generator
whose state goes into every checkpoint, so a resumed run follows the same
path as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from normbounds.errors import TrainingError
from normbounds.io import write_dir, write_json, write_text
from normbounds.pipeline import checkpoints
from normbounds.pipeline.config import Config, Entry
from normbounds.pipeline.data import Split
from normbounds.pipeline.imports import code_deps, relative
from normbounds.pipeline.losses import LOSSES
from normbounds.pipeline.models import Arch, build, factory_file, load_factory
from normbounds.pipeline.numeric import TRAIN_STAGE
from normbounds.pipeline.precision import PRECISIONS, compiled, forward_context, tf32_products
from normbounds.pipeline.runs import remove_partial, resume_point
from normbounds.progress import progress, say
from normbounds.reproducibility import kernels_label


def file_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def code_files(cfg: Config) -> dict[str, Path]:
    """The source files whose digests are part of a run's fingerprint, by path: the files
    of the train stage's imports that can change a trained run (imports.code_deps, as
    numeric.py declares them; the train stage's DVC deps are the same list), and a custom
    network's module."""
    files = {relative(path): path for path in code_deps(TRAIN_STAGE)}
    if cfg.model.factory is not None:  # a custom network: its module's source too
        load_factory(cfg.model.factory)
        path = factory_file(cfg.model.factory)
        if path is not None:
            files[path.name] = path
    return files


# keys added to `train` after runs were committed: left out of a run's fingerprint at
# these values, which compute exactly what the code did before the keys existed (fixed
# here, not read from config.py's defaults: a new default must change the fingerprint)
LATER_TRAIN_KEYS = {"precision": "fp32", "compile": "none"}


def fingerprint(cfg: Config, entry: Entry, data_digest: str) -> dict[str, Any]:
    """Everything that changes a run's numbers; a checkpoint is resumed only on a match.

    The digests of `code_files` are included because a persisted checkpoint folder
    outlives code changes; by file, so a mismatch can say which file changed.
    """
    data = {k: v for k, v in cfg.to_dict()["data"].items() if k not in ("root", "download")}
    train = {k: v for k, v in cfg.to_dict()["train"].items()
             if k not in LATER_TRAIN_KEYS or v != LATER_TRAIN_KEYS[k]}
    raw = {"entry": entry.name, "data": data, "data_digest": data_digest,
           "model": cfg.to_dict()["model"], "train": train,
           "threads": cfg.base.threads, "kernels": kernels_label(),  # both change numbers
           "code": {name: file_digest(path) for name, path in code_files(cfg).items()}}
    return json.loads(json.dumps(raw))  # tuples -> lists, as they come back from disk


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"data": gen.get_state(), "torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gen: torch.Generator, state: dict[str, Any]) -> None:
    gen.set_state(state["data"])
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state(("MT19937", npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def run_epoch(model: nn.Module, opt: torch.optim.Optimizer, data: Split, batch_size: int,
              loss: Callable, gen: torch.Generator, desc: str, precision: str = "fp32") -> float:
    """One pass over the shuffled train set; returns the mean train loss. No host sync
    inside: the data, the order and the running loss all stay on the device."""
    m = len(data)
    order = torch.randperm(m, generator=gen).to(data.x.device)  # drawn on CPU: same on any device
    total = torch.zeros((), dtype=torch.float64, device=data.x.device)
    model.train()
    for start in progress(range(0, m, batch_size), desc=desc, leave=False, unit="batch"):
        idx = order[start:start + batch_size]
        with forward_context(precision, data.x.device):
            batch_loss = loss(model(data.x[idx]), data.y[idx])  # (B, c, n, n) -> scalar
        opt.zero_grad(set_to_none=True)
        batch_loss.backward()
        opt.step()
        total += batch_loss.detach().double() * len(idx)
    return (total / m).item()


def train_entry(cfg: Config, entry: Entry, data: Split, arch: Arch, folder: Path,
                data_digest: str, log: Callable[[str], None] = say) -> list[list[float]]:
    """Train one grid entry, resuming from `folder` when it holds a matching run.

    Returns the history: one [epoch, mean train loss, learning rate] per epoch.
    """
    tc = cfg.train
    fp = fingerprint(cfg, entry, data_digest)
    # every generator that goes into a checkpoint starts from the entry's seed, so the
    # files themselves (not only the weights) are identical across runs and resumes
    torch.manual_seed(entry.seed)
    np.random.seed(entry.seed)
    random.seed(entry.seed)
    model = build(arch).to(data.x.device)
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum,
                          weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(tc.milestones), gamma=tc.lr_factor)
    gen = torch.Generator().manual_seed(entry.seed)
    loss = LOSSES[tc.loss](arch.num_classes)
    to_save = set(checkpoints.save_epochs(tc.epochs, tc.save_every))

    def snapshot(epoch: int, history: list) -> dict[str, Any]:
        return {"epoch": epoch, "arch": arch.to_dict(), "config": fp, "history": history,
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": _rng_state(gen)}

    def save(epoch: int, history: list) -> None:
        state = snapshot(epoch, history)
        if epoch < tc.epochs:  # the resume state first: a checkpoint never outruns it
            checkpoints.save_resume(state, folder)
            checkpoints.save(state, folder)
        else:  # finished: the resume state is no longer needed
            checkpoints.save(state, folder)
            checkpoints.resume_path(folder).unlink(missing_ok=True)

    remove_partial(folder)
    state = resume_point(folder, fp, log)
    if state is None:
        folder.mkdir(parents=True, exist_ok=True)
        history: list[list[float]] = []
        save(0, history)
        start = 0
    else:
        model.load_state_dict(state["model"])
        history, start = state["history"], state["epoch"]
        if start < tc.epochs:  # a resume state: optimizer, scheduler, RNG and data order
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            _set_rng_state(gen, state["rng"])
        log(f"train@{entry.name}: resuming from epoch {start} of {tc.epochs}")
    step_model = compiled(model, tc.compile)  # shares model's parameters
    for epoch in progress(range(start + 1, tc.epochs + 1), desc=f"train@{entry.name}",
                          unit="epoch", initial=start, total=tc.epochs):
        lr = opt.param_groups[0]["lr"]
        with tf32_products(PRECISIONS[tc.precision].tf32):
            mean_loss = run_epoch(step_model, opt, data, tc.batch_size, loss, gen,
                                  f"epoch {epoch}", tc.precision)
        if not math.isfinite(mean_loss):
            raise TrainingError(f"train@{entry.name}: the train loss became {mean_loss} at epoch"
                                f" {epoch} (lr {lr}); the last good checkpoint stays in {folder}")
        history.append([epoch, mean_loss, lr])
        sched.step()
        if epoch in to_save:
            save(epoch, history)
            log(f"train@{entry.name}: epoch {epoch}/{tc.epochs} loss {mean_loss:.5f} lr {lr:g}")
    return history


def write_history(history: list[list[float]], live_dir: Path) -> None:
    """The per-epoch train loss in DVCLive's layout: live_dir/plots/metrics/train_loss.tsv
    (step = epoch, a DVC plot) and live_dir/metrics.json (the last epoch, a DVC metric).

    Written from the history stored in the checkpoints into a fresh folder, then
    swapped in: a run killed mid-way, or resumed from an earlier checkpoint, never
    leaves a log that disagrees with its checkpoints. Not with DVCLive itself:
    DVCLive 3.49.1 opens Git from inside the stage and raises "Empty git repo" in a
    repository without commits, with save_dvc_exp=False and dvcyaml=None too
    (measured; docs/pipeline.md, "The pipeline").
    """
    rows = [(int(epoch), float(f"{loss:.8g}")) for epoch, loss, _lr in history]

    def fill(folder: Path) -> None:
        lines = ["step\ttrain_loss"] + [f"{step}\t{loss!r}" for step, loss in rows]
        write_text("\n".join(lines) + "\n", folder / "plots" / "metrics" / "train_loss.tsv")
        last = {"train_loss": rows[-1][1], "step": rows[-1][0]} if rows else {}
        write_json(last, folder / "metrics.json")

    write_dir(live_dir, fill)
