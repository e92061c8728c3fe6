"""A run's checkpoint folder: where to resume, damaged files, changes of config or code.

A run is `checkpoints/<entry>/`: slim checkpoints `epoch_NNNN.pt` (what evaluation
reads: weights, epoch, architecture, config, history) and, while the run is not
finished, one rolling `resume.pt` with everything else a bit-identical resume
needs (optimizer, scheduler, RNG states and data order). `resume.pt` is written
before the checkpoint of the same epoch and deleted once the last one is saved,
so a finished run holds the weights once per checkpoint and nothing more.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from normbounds.pipeline import checkpoints

# Set to 1 to declare that a code change alters no number: a run trained by the old code
# is then resumed (and adopted) instead of kept aside and trained afresh
# (docs/reliability.md, "Changed training code").
HARMLESS = "NORMBOUNDS_HARMLESS_CODE_CHANGE"


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
    evaluate cannot fill, so the run goes back to its resume state if that lies
    before the hole, and to the start otherwise.
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


def resume_point(folder: Path, fp: dict, log: Callable[[str], None]) -> dict | None:
    """Where a run goes on from: the last checkpoint of a finished run, or the resume
    state of an unfinished one; None when it starts from epoch 0. A run of another
    config is cleared and one of other code kept aside first; with no usable resume
    state the run's own checkpoints stay, each replaced as training writes it again
    (training is deterministic, so they come out the same)."""
    _drop_damaged(folder, checkpoints.expected_epochs(fp), log)
    saved = checkpoints.list_epochs(folder)
    if not saved:
        return None
    newest = checkpoints.load_state(saved[-1][1])  # intact zip, so an error here is a real one
    if newest["config"] != fp and not _adopted(folder, newest, fp, log):
        return None
    if newest["epoch"] >= fp["train"]["epochs"]:  # finished: no resume state is kept
        checkpoints.resume_path(folder).unlink(missing_ok=True)
        return {**newest, "config": fp}
    return _resume_state(folder, saved, fp, log)


def _adopted(folder: Path, newest: dict, fp: dict, log: Callable[[str], None]) -> bool:
    """A run of another config: True when only the code differs and HARMLESS=1 declares
    the change harmless (the run is then adopted); otherwise it is kept aside (other
    code) or replaced (another config)."""
    changes = _differences(newest["config"], fp)
    if not all(c.startswith("code") for c in changes):
        log(f"{folder} was trained with a different config ({'; '.join(changes[:5])}):"
            " starting fresh")
        clear(folder)
        return False
    files = ", ".join(_changed_files(newest["config"]["code"], fp["code"]))
    if os.environ.get(HARMLESS) == "1":
        log(f"{folder}: the code changed ({files}); {HARMLESS}=1 declares it harmless:"
            f" resuming from epoch {newest['epoch']}")
        adopt(folder, fp)
        return True
    aside = keep_aside(folder, newest["config"]["code"])
    log(f"{folder} was trained by other code ({files} changed): kept in {aside}, training"
        f" afresh. If the change alters no number, stop, put {aside.name} back as"
        f" {folder.name} and run again with {HARMLESS}=1")
    return False


def adopt(folder: Path, fp: dict) -> None:
    """Re-save every checkpoint of the run, and its resume state, with the fingerprint
    `fp`: the folder then holds the very bytes a fresh run of the new code writes (a
    checkpoint is its weights, epoch, architecture, config and history, and only the
    config changed), so dvc.lock names files that a fresh clone's `dvc repro` reproduces.
    Each file is replaced atomically, the resume state first and the newest checkpoint
    last: until that one is written the run still reads as trained by the old code, so a
    kill leaves it to be adopted again, whole."""
    resume, problem = checkpoints.load_resume(folder)
    if problem is None:
        checkpoints.save_resume({**resume, "config": fp}, folder)
    for _, path in checkpoints.list_epochs(folder):  # in epoch order: the newest last
        state = checkpoints.load_state(path, checkpoints.saved_device())
        checkpoints.save({**state, "config": fp}, folder)


def _resume_state(folder: Path, saved: list, fp: dict, log: Callable[[str], None]) -> dict | None:
    """The resume state of an unfinished run, with the checkpoints made to agree with it:
    one it was saved for but a kill left unwritten is written from it, later ones go."""
    resume, problem = checkpoints.load_resume(folder)
    epochs = [e for e, _ in saved]
    expected = checkpoints.expected_epochs(fp)
    if problem is None and resume["config"] != fp:
        problem = f"{checkpoints.resume_path(folder)}: made with another config"
    elif problem is None and resume["epoch"] > epochs[-1]:
        following = expected[len(epochs)] if len(epochs) < len(expected) else None
        if resume["epoch"] != following:
            problem = (f"{checkpoints.resume_path(folder)}: epoch {resume['epoch']} does not"
                       f" follow the last checkpoint (epoch {epochs[-1]})")
        else:  # killed between the resume state and its checkpoint
            checkpoints.save(resume, folder)
    if problem is not None:
        log(f"{problem}: training again from the start")
        return None
    later = [path for epoch, path in saved if epoch > resume["epoch"]]
    if later:
        log(f"{folder}: {len(later)} checkpoint(s) after the resume state (epoch"
            f" {resume['epoch']}) will be written again")
        for path in later:
            path.unlink()
    return resume


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


