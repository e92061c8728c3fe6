"""Device choice and progress bars."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from typing import Any

import torch
from tqdm.auto import tqdm

from normbounds.config import Config, ConfigError, Entry, load_params
from normbounds.paths import Paths


def resolve_device(choice: str) -> torch.device:
    """base.device -> torch.device: `auto` takes CUDA when present, `cuda` insists on it."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("params.yaml: base.device = 'cuda' but this machine has no usable"
                          " CUDA device; use 'auto' or 'cpu'")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def progress(iterable: Iterable, **kwargs: Any) -> tqdm:
    """A tqdm bar on a terminal, silent in logs and CI."""
    return tqdm(iterable, disable=not sys.stderr.isatty(), dynamic_ncols=True, **kwargs)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main; a known error prints one line and exits 1, without a traceback."""
    from normbounds.data import DatasetError
    from normbounds.io import ArtifactError
    from normbounds.layers import UnsupportedLayerError
    from normbounds.lipschitz import ConvergenceError
    from normbounds.train import TrainingError

    known = (ConfigError, DatasetError, ArtifactError, TrainingError, ConvergenceError,
             UnsupportedLayerError)
    try:
        main()
    except known as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


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
