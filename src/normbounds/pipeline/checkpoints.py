"""Checkpoint files: `checkpoints/<entry>/epoch_NNNN.pt` and `resume.pt`, written atomically.

A checkpoint is slim: the model state, the epoch, the architecture, the config
the run was trained with and the loss history, enough to evaluate or rebuild
the network. The resume state of an unfinished run (all of that plus the
optimiser, scheduler and RNG states) is one rolling `resume.pt` (runs.py).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from normbounds.errors import ArtifactError, CheckpointError
from normbounds.io import load_torch, save_torch
from normbounds.pipeline.models import Arch, build

_NAME = re.compile(r"epoch_(\d{4,})\.pt")
# a checkpoint (what evaluation reads), and the rolling resume state of an unfinished run
REQUIRED_KEYS = ("epoch", "arch", "config", "history", "model")
RESUME_KEYS = (*REQUIRED_KEYS, "optimizer", "scheduler", "rng")
RESUME_NAME = "resume.pt"


def path_for(folder: Path, epoch: int) -> Path:
    return Path(folder) / f"epoch_{epoch:04d}.pt"


def list_epochs(folder: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of every checkpoint in `folder`, in epoch order (temp files ignored)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.fullmatch(p.name))]
    return sorted(found)


def is_intact(path: Path) -> bool:
    """A complete zip whose every member passes its CRC check (reads, but unpickles nothing)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def _nonfinite(tensors: dict[str, Any]) -> str | None:
    """The name of the first tensor holding a NaN or an infinity, if any."""
    for name, value in tensors.items():
        if torch.is_tensor(value) and value.is_floating_point() and not value.isfinite().all():
            return name
    return None


def problem(path: Path) -> str | None:
    """Why `path` cannot serve as a checkpoint of this project, or None when it can.

    Checks, in order: every zip member's CRC (torch.load does not check it, so a
    flipped byte would load as different weights), a weights-only load, the keys
    every checkpoint has, and finite weights.
    """
    if not is_intact(path):
        return _crc_failure(path)
    try:
        load_state(path)
    except ArtifactError as err:
        return str(err)
    return None


def _crc_failure(path: Path) -> str:
    return f"{path}: fails its CRC check; the file is truncated or corrupt"


def save_epochs(epochs: int, every: int) -> list[int]:
    """The epochs a finished run saves: initialisation, the first, every `every`, the last."""
    return sorted({0, 1, epochs} | set(range(every, epochs + 1, every)))


def expected_epochs(config: dict[str, Any]) -> list[int]:
    """save_epochs of the train config a checkpoint records (its "config" entry)."""
    return save_epochs(int(config["train"]["epochs"]), int(config["train"]["save_every"]))


def save(state: dict[str, Any], folder: Path) -> Path:
    """The slim checkpoint of `state` (its REQUIRED_KEYS only), atomically."""
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{folder}: the checkpoint to save lacks {missing} (a bug in the"
                              " caller: every checkpoint holds REQUIRED_KEYS)")
    path = path_for(folder, state["epoch"])
    save_torch({k: state[k] for k in REQUIRED_KEYS}, path)
    return path


def resume_path(folder: Path) -> Path:
    return Path(folder) / RESUME_NAME


def save_resume(state: dict[str, Any], folder: Path) -> Path:
    """The whole training state (RESUME_KEYS), atomically, over the previous one."""
    missing = [k for k in RESUME_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{folder}: the resume state to save lacks {missing} (a bug in"
                              " the caller: it holds RESUME_KEYS)")
    save_torch({k: state[k] for k in RESUME_KEYS}, resume_path(folder))
    return resume_path(folder)


def load_resume(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the resume state, None), or (None, why it cannot be used)."""
    path = resume_path(folder)
    if not path.is_file():
        return None, f"{path}: missing"
    why = problem(path)
    if why is not None:
        return None, why
    state = load_torch(path)
    if any(k not in state for k in RESUME_KEYS):
        return None, f"{path}: not a resume state (expected keys {', '.join(RESUME_KEYS)})"
    return state, None


def saved_device() -> str | None:
    """Where a checkpoint to re-save loads to: back where it was saved (a CUDA run's
    tensors stay on CUDA, so its bytes are a fresh run's), or to the CPU without CUDA."""
    return None if torch.cuda.is_available() else "cpu"


def load_state(path: Path, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, checked for the keys every checkpoint has."""
    state = load_torch(path, map_location)
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not a normbounds checkpoint (expected keys "
                              + ", ".join(REQUIRED_KEYS) + ")")
    bad = _nonfinite(state["model"]) if isinstance(state["model"], dict) else "model"
    if bad is not None:
        raise CheckpointError(f"{path}: the weights {bad!r} hold NaN or infinite values;"
                              " delete the file (`dvc repro` retrains from the one before)")
    return state


def load(path: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network saved in `path`; returns (model in eval mode, metadata).

    The metadata is the checkpoint without its tensors-of-state: epoch, arch,
    config, history.
    """
    if not is_intact(path):
        raise CheckpointError(f"{_crc_failure(path)} (`dvc repro` retrains from the checkpoint"
                              " before it)")
    state = load_state(path, device)
    model = build(Arch.from_dict(state["arch"])).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    meta = {k: state[k] for k in ("epoch", "arch", "config", "history")}
    return model, meta
