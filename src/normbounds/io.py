"""Atomic writes and safe loads: a file is either complete or absent.

Every artefact goes to a temporary file in the same folder, is fsynced and
then renamed over the target, so a kill mid-write never leaves a half file
under the real name. Torch files are loaded with `weights_only=True`.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from normbounds.errors import ArtifactError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give what a normal write gives
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def save_torch(obj: Any, path: Path) -> None:
    _atomic(path, lambda fh: torch.save(obj, fh))


def load_torch(path: Path, map_location: str | torch.device | None = "cpu") -> Any:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused a global: code, not tensors
        raise ArtifactError(f"{path}: not a file of this project: it holds Python objects"
                            " that a weights-only load refuses to run; delete it (`dvc repro`"
                            " writes checkpoints again)") from None
    except Exception as err:  # torch raises several types for a damaged zip or pickle
        reason = str(err).splitlines()[0] if str(err) else ""
        raise ArtifactError(f"{path}: cannot be loaded ({type(err).__name__}: {reason});"
                            " the file is truncated or corrupt") from None


def write_json(obj: Any, path: Path) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    _atomic(path, lambda fh: fh.write(text.encode()))


def write_text(text: str, path: Path) -> None:
    _atomic(path, lambda fh: fh.write(text.encode()))


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found (run `dvc repro` to create it)")
    return json.loads(path.read_text())


def write_dir(folder: Path, fill: Callable[[Path], None]) -> None:
    """Write a folder atomically: `fill` writes into a fresh sibling folder, which then
    replaces `folder` (the old one is renamed aside first and deleted last), so a kill
    leaves the old folder, the new one, or the old one beside it, never a mix."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.new-{os.getpid()}")
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    fill(tmp)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
