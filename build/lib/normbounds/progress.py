"""Progress bars and printing beside them: the ground floor every wing may use."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

try:  # the pipeline's extra; the API and CLI work without it, with no bars
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover (CI installs the extras)
    tqdm = None


def progress(iterable: Iterable, **kwargs: Any) -> Iterable:
    """A tqdm bar on a terminal, silent in logs and CI (and without tqdm)."""
    if tqdm is None:
        return iterable
    return tqdm(iterable, disable=not sys.stderr.isatty(), dynamic_ncols=True, **kwargs)


def say(text: str) -> None:
    """Print a line without garbling a progress bar that is on screen (tqdm.write)."""
    if tqdm is None:
        print(text, flush=True)
    else:
        tqdm.write(text, file=sys.stdout)
