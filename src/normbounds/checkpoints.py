"""Checkpoint files: `checkpoints/<entry>/epoch_NNNN.pt`, written atomically.

Each holds the model state, optimiser and scheduler state, the epoch, the
architecture, the config the run was trained with, the loss history and the
RNG states, so a run can be evaluated, rebuilt or resumed from any of them.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from normbounds.io import ArtifactError, load_torch, save_torch
from normbounds.models import Arch, ConvNet

_NAME = re.compile(r"epoch_(\d{4,})\.pt")
REQUIRED_KEYS = ("epoch", "arch", "config", "model", "optimizer", "scheduler", "history", "rng")


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


def save(state: dict[str, Any], folder: Path) -> Path:
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    path = path_for(folder, state["epoch"])
    save_torch(state, path)
    return path


def load_state(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, checked for the keys every checkpoint has."""
    state = load_torch(path, map_location)
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise ArtifactError(f"{path}: not a normbounds checkpoint (expected keys "
                            + ", ".join(REQUIRED_KEYS) + ")")
    return state


def load(path: Path, device: str | torch.device = "cpu") -> tuple[ConvNet, dict[str, Any]]:
    """Rebuild the network saved in `path`; returns (model in eval mode, metadata).

    The metadata is the checkpoint without its tensors-of-state: epoch, arch,
    config, history.
    """
    state = load_state(path, device)
    model = ConvNet(Arch.from_dict(state["arch"])).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    meta = {k: state[k] for k in ("epoch", "arch", "config", "history")}
    return model, meta
