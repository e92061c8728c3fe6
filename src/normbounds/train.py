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
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from normbounds import checkpoints
from normbounds.config import Config, Entry
from normbounds.data import Split
from normbounds.errors import TrainingError
from normbounds.io import write_dir, write_json, write_text
from normbounds.models import Arch, build, factory_file, load_factory
from normbounds.network import read_network
from normbounds.reproducibility import kernels_label
from normbounds.runtime import progress, say


def loss_fn(name: str, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """train.loss -> loss(logits (B, C), labels (B,)), the batch mean."""
    if name == "mse":  # the paper's: squared error against one-hot targets, mean over B*C
        return lambda out, y: F.mse_loss(out, F.one_hot(y, num_classes).to(out.dtype))
    if name == "cross_entropy":
        return F.cross_entropy
    raise ValueError(f"unknown loss {name!r}: allowed mse, cross_entropy")


def file_digest(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


# Set to 1 to declare that a code change alters no number: a run trained by the old code
# is then resumed (and adopted) instead of kept aside and trained afresh. README, "Code changes".
HARMLESS = "NORMBOUNDS_HARMLESS_CODE_CHANGE"


def code_files(cfg: Config) -> dict[str, Path]:
    """The source files whose digests are part of a run's fingerprint, by name."""
    files = {"train.py": Path(__file__), "models.py": Path(__file__).with_name("models.py")}
    if cfg.model.factory is not None:  # a custom network: its module's source too
        load_factory(cfg.model.factory)
        path = factory_file(cfg.model.factory)
        if path is not None:
            files[path.name] = path
    return files


def fingerprint(cfg: Config, entry: Entry, data_digest: str) -> dict[str, Any]:
    """Everything that changes a run's numbers; a checkpoint is resumed only on a match.

    The digests of `code_files` are included because a persisted checkpoint folder
    outlives code changes; by file, so a mismatch can say which file changed.
    """
    data = {k: v for k, v in cfg.to_dict()["data"].items() if k not in ("root", "download")}
    raw = {"entry": entry.name, "data": data, "data_digest": data_digest,
           "model": cfg.to_dict()["model"], "train": cfg.to_dict()["train"],
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


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def remove_partial(folder: Path) -> None:
    """Delete half-written checkpoints (io's temporary files) that a kill left behind."""
    for tmp in Path(folder).glob(".epoch_*.tmp"):
        tmp.unlink()


def clear(folder: Path) -> None:
    """Start the folder afresh, atomically: the old run is renamed aside in one step
    (a kill or a failure leaves either the old run whole or an empty folder), then
    deleted; leftovers of an interrupted delete go on the next start."""
    folder = Path(folder)
    _remove_aside(folder)
    if folder.is_dir():
        aside = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def _remove_aside(folder: Path) -> None:
    for old in folder.parent.glob(f".{folder.name}.old-*"):
        shutil.rmtree(old, ignore_errors=True)


def _drop_damaged(folder: Path, expected: list[int], log: Callable[[str], None]) -> None:
    """Delete the first damaged or missing-predecessor checkpoint and all later ones;
    training writes them again.

    A checkpoint is damaged when it fails its CRC, is not loadable as weights only,
    or holds non-finite weights. The saved epochs must be a prefix of `expected`:
    resuming past a damaged file or a gap would leave a hole in the run that
    evaluate cannot fill, so the run goes back to the last good checkpoint.
    """
    saved = checkpoints.list_epochs(folder)
    for i, (epoch, path) in enumerate(saved):
        if i >= len(expected) or epoch != expected[i]:
            reason = (f"{folder}: epoch {expected[i]} is missing before {path.name}"
                      if i < len(expected) else f"{path}: lies past the last epoch")
        else:
            reason = checkpoints.problem(path)
        if reason is not None:
            log(f"{reason}: it and the {len(saved) - i - 1} later checkpoint(s) will be"
                " written again")
            for _, later in saved[i:]:
                later.unlink()
            return


def _resume_point(folder: Path, fp: dict, log: Callable[[str], None]) -> dict | None:
    """The newest intact checkpoint, if it was made with this exact config, else None."""
    _drop_damaged(folder, checkpoints.expected_epochs(fp), log)
    saved = checkpoints.list_epochs(folder)
    if not saved:
        return None
    state = checkpoints.load_state(saved[-1][1])  # intact zip, so an error here is a real one
    if state["config"] == fp:
        return state
    changes = _differences(state["config"], fp)
    if not all(c.startswith("code") for c in changes):
        log(f"{folder} was trained with a different config ({'; '.join(changes[:5])}):"
            " starting fresh")
        return None
    files = ", ".join(_changed_files(state["config"]["code"], fp["code"]))
    if os.environ.get(HARMLESS) == "1":  # adopted: the newest checkpoint takes the new code
        log(f"{folder}: the code changed ({files}); {HARMLESS}=1 declares it harmless:"
            f" resuming from epoch {state['epoch']}")
        checkpoints.save({**state, "config": fp}, folder)
        return {**state, "config": fp}
    aside = keep_aside(folder, state["config"]["code"])
    log(f"{folder} was trained by other code ({files} changed): kept in {aside}, training"
        f" afresh. If the change alters no number, stop, put {aside.name} back as"
        f" {folder.name} and run again with {HARMLESS}=1")
    return None


def _changed_files(old: Any, new: dict[str, str]) -> list[str]:
    if not isinstance(old, dict):  # a checkpoint from before digests were kept by file
        return sorted(new)
    return sorted(name for name in set(old) | set(new) if old.get(name) != new.get(name))


def keep_aside(folder: Path, old_code: Any) -> Path:
    """Move a finished or partial run of other code next to its folder, in one rename,
    instead of deleting it: `.<entry>.code-<digest>` (a hidden sibling, not a DVC output)."""
    tag = hashlib.sha256(json.dumps(old_code, sort_keys=True).encode()).hexdigest()[:8]
    aside = folder.with_name(f".{folder.name}.code-{tag}")
    if aside.exists():  # the same old code kept before: the newer copy replaces it
        shutil.rmtree(aside)
    os.replace(folder, aside)
    return aside


def run_epoch(model: nn.Module, opt: torch.optim.Optimizer, data: Split, batch_size: int,
               loss: Callable, gen: torch.Generator, desc: str) -> float:
    """One pass over the shuffled train set; returns the mean train loss."""
    m = len(data)
    order = torch.randperm(m, generator=gen).to(data.x.device)  # drawn on CPU: same on any device
    total = torch.zeros((), dtype=torch.float64, device=data.x.device)
    model.train()
    for start in progress(range(0, m, batch_size), desc=desc, leave=False, unit="batch"):
        idx = order[start:start + batch_size]
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
    read_network(model, arch.in_shape)  # an unsupported network is refused before training
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum,
                          weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(tc.milestones), gamma=tc.lr_factor)
    gen = torch.Generator().manual_seed(entry.seed)
    loss = loss_fn(tc.loss, arch.num_classes)
    to_save = set(checkpoints.save_epochs(tc.epochs, tc.save_every))

    def snapshot(epoch: int, history: list) -> dict[str, Any]:
        return {"epoch": epoch, "arch": arch.to_dict(), "config": fp, "history": history,
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": _rng_state(gen)}

    remove_partial(folder)
    state = _resume_point(folder, fp, log)
    if state is None:
        clear(folder)
        history: list[list[float]] = []
        checkpoints.save(snapshot(0, history), folder)
        start = 0
    else:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        _set_rng_state(gen, state["rng"])
        history, start = state["history"], state["epoch"]
        log(f"train@{entry.name}: resuming from epoch {start} of {tc.epochs}")
    for epoch in progress(range(start + 1, tc.epochs + 1), desc=f"train@{entry.name}",
                          unit="epoch", initial=start, total=tc.epochs):
        lr = opt.param_groups[0]["lr"]
        mean_loss = run_epoch(model, opt, data, tc.batch_size, loss, gen, f"epoch {epoch}")
        if not math.isfinite(mean_loss):
            raise TrainingError(f"train@{entry.name}: the train loss became {mean_loss} at epoch"
                                f" {epoch} (lr {lr}); the last good checkpoint stays in {folder}")
        history.append([epoch, mean_loss, lr])
        sched.step()
        if epoch in to_save:
            checkpoints.save(snapshot(epoch, history), folder)
            log(f"train@{entry.name}: epoch {epoch}/{tc.epochs} loss {mean_loss:.5f} lr {lr:g}")
    return history


def write_history(history: list[list[float]], live_dir: Path) -> None:
    """The per-epoch train loss in DVCLive's layout: live_dir/plots/metrics/train_loss.tsv
    (step = epoch, a DVC plot) and live_dir/metrics.json (the last epoch, a DVC metric).

    Written from the history stored in the checkpoints into a fresh folder, then
    swapped in: a run killed mid-way, or resumed from an earlier checkpoint, never
    leaves a log that disagrees with its checkpoints. Not with DVCLive itself:
    DVCLive 3.49 opens the DVC repository and Git from inside the stage, and raises
    "Empty git repo" in a repository without commits (README, "Logs").
    """
    rows = [(int(epoch), float(f"{loss:.8g}")) for epoch, loss, _lr in history]

    def fill(folder: Path) -> None:
        lines = ["step\ttrain_loss"] + [f"{step}\t{loss!r}" for step, loss in rows]
        write_text("\n".join(lines) + "\n", folder / "plots" / "metrics" / "train_loss.tsv")
        last = {"train_loss": rows[-1][1], "step": rows[-1][0]} if rows else {}
        write_json(last, folder / "metrics.json")

    write_dir(live_dir, fill)
