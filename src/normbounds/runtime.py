"""Stage plumbing: torch set-up (threads, determinism, device), progress bars, one-line errors."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch
from tqdm.auto import tqdm

from normbounds.config import BaseConfig, Config, Entry, load_params
from normbounds.errors import ConfigError, NormboundsError
from normbounds.paths import Paths
from normbounds.reproducibility import NATIVE_SWITCH, native_kernels, torch_loaded_first


def resolve_device(choice: str) -> torch.device:
    """base.device -> torch.device: `auto` takes CUDA when present, `cuda` insists on it."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("params.yaml: base.device = 'cuda' but this machine has no usable"
                          " CUDA device; use 'auto' or 'cpu'")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


CPU_BATCH_BYTES = 32 << 20  # float64 activations of one CPU evaluation batch (cache-sized)
GPU_MEMORY_SHARE = 0.25  # of the free device memory, for one evaluation batch
MAX_EVAL_BATCH = 8192


def eval_batch_size(setting: int | str, sample_bytes: int, device: torch.device) -> int:
    """bound.eval_batch_size: the number itself, or for `auto` the batch whose float64
    activations (sample_bytes per input) fill the device's budget: 32 MiB on a CPU,
    where larger batches were measured slower (page faults on large activations),
    and a quarter of the free memory on a GPU. No value depends on the batch."""
    if setting != "auto":
        return int(setting)
    if device.type == "cuda":
        budget = torch.cuda.mem_get_info(device)[0] * GPU_MEMORY_SHARE
    else:
        budget = CPU_BATCH_BYTES
    return int(max(1, min(MAX_EVAL_BATCH, budget // max(1, sample_bytes))))


def setup_torch(base: BaseConfig) -> torch.device:
    """Threads, deterministic algorithms and the device, for a stage that computes.

    The CPU kernels were pinned when the package was imported
    (`reproducibility.py`); if torch came first they were not, and results would
    depend on the machine, so that is an error unless native kernels were chosen.
    """
    if torch_loaded_first() and not native_kernels():
        raise ConfigError("torch was imported before normbounds, so its CPU kernels are not"
                          " pinned; import normbounds first, or set"
                          f" {NATIVE_SWITCH}=1 to accept machine-dependent results")
    torch.set_num_threads(base.threads)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    return resolve_device(base.device)


def progress(iterable: Iterable, **kwargs: Any) -> tqdm:
    """A tqdm bar on a terminal, silent in logs and CI."""
    return tqdm(iterable, disable=not sys.stderr.isatty(), dynamic_ncols=True, **kwargs)


def say(text: str) -> None:
    """Print a line without garbling a progress bar that is on screen (tqdm.write)."""
    tqdm.write(text, file=sys.stdout)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main; a known error prints one line and exits 1, without a traceback."""
    try:
        main()
    except NormboundsError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except OSError as err:  # a full disk, a read-only folder, a file where a folder should be
        print(f"error: {os_message(err)}", file=sys.stderr)
        sys.exit(1)


_OS_HINTS = {
    errno.ENOSPC: "no space left on the device; free some and run `dvc repro` again (files"
                  " already written are complete: every write is atomic)",
    errno.EDQUOT: "disk quota exceeded; free some space and run `dvc repro` again",
    errno.EACCES: "permission denied; make it writable for you and run `dvc repro` again",
    errno.EPERM: "operation not permitted; check its owner and flags and run again",
    errno.EROFS: "the file system is read-only; run from a writable checkout",
    errno.ENOTDIR: "a part of this path is a file, not a folder; fix the path",
}


def os_message(err: OSError) -> str:
    """One line for an OSError: the file, what went wrong, and what to do."""
    where = err.filename if err.filename is not None else "a file"
    hint = _OS_HINTS.get(err.errno, err.strerror or type(err).__name__)
    return f"{where}: {hint}"


def stage_args(description: str | None, with_entry: bool = True) -> tuple[Entry | None, Paths]:
    """The command line of a stage: the grid entry (per-entry stages) and `--variant`."""
    parser = argparse.ArgumentParser(description=description)
    if with_entry:
        parser.add_argument("entry", help="grid entry <depth>-<width>-<seed>, e.g. 3-16-0")
    parser.add_argument("--variant", default=None,
                        help="a study variant named under `variants:` in params.yaml")
    args = parser.parse_args()
    entry = Entry.parse(args.entry) if with_entry else None
    return entry, Paths(variant=args.variant)


def stage_config(paths: Paths) -> Config:
    """params.yaml of the pipeline folder, with the stage's variant laid over it."""
    return load_params(paths.params, paths.variant)
