"""Stage plumbing: torch set-up (threads, determinism, device) and one-line errors."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable

import torch

from normbounds.errors import ConfigError, NormboundsError
from normbounds.pipeline.config import BaseConfig, Config, Entry, load_params
from normbounds.pipeline.paths import Paths
from normbounds.reproducibility import NATIVE_SWITCH, native_kernels, torch_loaded_first


def resolve_device(choice: str) -> torch.device:
    """base.device -> torch.device: `auto` takes CUDA when present, `cuda` insists on it."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("params.yaml: base.device = 'cuda' but this machine has no usable"
                          " CUDA device; use 'auto' or 'cpu'")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def setup_torch(base: BaseConfig) -> torch.device:
    """Threads, deterministic algorithms and the device, for a stage that computes.

    The CPU kernels were pinned when `normbounds.pipeline` was imported
    (`reproducibility.py`); if torch came first they were not, and results would
    depend on the machine, so that is an error unless native kernels were chosen.
    """
    if torch_loaded_first() and not native_kernels():
        raise ConfigError("torch was imported before normbounds.pipeline, so its CPU kernels"
                          " are not pinned; import normbounds.pipeline first, or set"
                          f" {NATIVE_SWITCH}=1 to accept machine-dependent results")
    torch.set_num_threads(base.threads)
    # torch.use_deterministic_algorithms(True) without its import of torch._inductor (2 s in
    # every stage): inductor's own flag matters only under torch.compile, and
    # precision.compiled sets it there
    torch._C._set_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    return resolve_device(base.device)


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
