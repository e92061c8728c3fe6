"""Which files of the train stage's imports can change a trained run: the one declaration.

A file is *numeric* when some edit of it can change a run's trained weights or the
bytes of its checkpoint files (what DVC hashes into dvc.lock). Its digest is in every
run's fingerprint (`train.code_files`), and it is a DVC dep of the train stage, so
editing it reruns the stage and sets runs trained by the old code aside. Every other
file of the closure can be edited freely: DVC does not rerun training for it, and no
run is set aside. The reason beside each file says why it is on its side
(docs/pipeline.md, "Which code a run depends on", shows this table).

A file of the closure declared on neither side counts as numeric (the safe side), and
tests/pipeline/test_fingerprint.py fails until it is declared.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

# the stage whose outputs (checkpoints) carry a code fingerprint
TRAIN_STAGE = "train"

PIPE = "src/normbounds/pipeline/"

NUMERIC: dict[str, str] = {
    "stages/train.py": "chooses the data, the architecture and the folder of the run",
    "src/normbounds/__init__.py": "pins the CPU kernels before torch loads",
    "src/normbounds/reproducibility.py": "the pinned kernels (oneDNN, MKL, OpenBLAS levels)",
    f"{PIPE}runtime.py": "sets the device and torch's thread count",
    f"{PIPE}train.py": "the loop, the seeds, the data order and what a checkpoint holds",
    f"{PIPE}models.py": "the networks and their initialisation",
    f"{PIPE}precision.py": "TF32, bf16 autocast and torch.compile",
    f"{PIPE}losses.py": "the training loss",
    f"{PIPE}data.py": "loads the prepared tensors the loop reads",
    f"{PIPE}datasets.py": "the tensors' container and the class-stratified subsets",
    "src/normbounds/measure/geometry.py": "the conv output side, so the head's input size",
    f"{PIPE}checkpoints.py": "which epochs are saved and which keys a checkpoint holds",
    "src/normbounds/io.py": "torch.save of every checkpoint: the bytes DVC hashes",
    f"{PIPE}runs.py": "where a run resumes from, and what adoption rewrites",
}

NOT_NUMERIC: dict[str, str] = {
    f"{PIPE}config.py": "parses params.yaml; every value training reads from it is itself in"
                        " the fingerprint (data, model, train, threads), and a wrong"
                        " feature_sides fails the head's first product",
    "src/normbounds/constraints.py": "the params' limits and their messages: accept or refuse",
    f"{PIPE}paramfile.py": "reads the YAML; the values it yields are in the fingerprint",
    f"{PIPE}variants.py": "lays a study variant's overrides over its params; the values they"
                          " yield are in the fingerprint",
    "src/normbounds/errors.py": "error classes and messages",
    "src/normbounds/progress.py": "progress bars and log lines",
    f"{PIPE}__init__.py": "the pipeline package's docstring",
    f"{PIPE}paths.py": "where files live; the train data's digest is in the fingerprint",
    f"{PIPE}imports.py": "computes this closure; a file joining or leaving it changes the"
                         " fingerprint's list of digests",
    f"{PIPE}numeric.py": "this declaration; moving a file between the lists, or out of"
                         " MOVED, changes the fingerprint's list of digests",
    "src/normbounds/measure/__init__.py": "the API's table of public names, loaded lazily",
    "src/normbounds/measure/options.py": "BoundConfig: evaluation options, not read by training",
    "src/normbounds/measure/statistics.py": "P, S and X of the bounds; training reads none",
}

# The move of the pipeline's modules into pipeline/ changed, in the numeric files, only the
# module paths of their imports (and, in train.py, the call of `as_before_the_move`): no
# number. A run's fingerprint therefore names and digests each moved file as it was before
# the move, as long as the file is as the move left it, so the move retrains nothing and
# every committed checkpoint keeps its bytes. Editing one of them gives it its own path
# and digest in the fingerprint, as for any file. tests/pipeline/test_fingerprint.py
# proves each entry: the file's text, with its imports written back as before the move,
# has the digest before the move.
# path now: (path before the move, digest now, digest before the move)
MOVED: dict[str, tuple[str, str, str]] = {
    "stages/train.py": ("stages/train.py", "d161d327e5d82b70", "9255850913f8d031"),
    f"{PIPE}checkpoints.py": ("src/normbounds/checkpoints.py",
                              "2c5709f4154504c1", "daaff92011e4d31e"),
    f"{PIPE}data.py": ("src/normbounds/data.py", "3d19ccae1b0a6fcc", "4e9b0effe9d3b409"),
    f"{PIPE}datasets.py": ("src/normbounds/datasets.py", "c301314ee1385e34", "c301314ee1385e34"),
    f"{PIPE}losses.py": ("src/normbounds/losses.py", "b101a9c9fc32f76c", "b101a9c9fc32f76c"),
    f"{PIPE}models.py": ("src/normbounds/models.py", "b070f762dc0fb975", "ef573a24a796be0c"),
    f"{PIPE}precision.py": ("src/normbounds/precision.py", "fb16f46ea789d320", "fb16f46ea789d320"),
    f"{PIPE}runs.py": ("src/normbounds/runs.py", "807f69e442a43d16", "abeea617a2bc23f4"),
    f"{PIPE}runtime.py": ("src/normbounds/runtime.py", "e9b044da044aee88", "89345e1e391c571a"),
    f"{PIPE}train.py": ("src/normbounds/train.py", "5fe830b143e0eba2", "ac94e8d6b5fefbd4"),
}


def as_before_the_move(code: dict[str, str]) -> dict[str, str]:
    """A fingerprint's {file: digest}, each file that MOVED declares named and digested as
    before the move when its digest is still the declared one; in the order of the code
    before the move: stages/ first, then the package's files by path, then the rest (a
    custom network's module)."""
    renamed = {}
    for name, digest in code.items():
        old_name, now, before = MOVED.get(name, (name, digest, digest))
        renamed.update({old_name: before} if digest == now else {name: digest})

    def place(name: str) -> tuple[int, PurePosixPath]:
        group = 0 if name.startswith("stages/") else 1 if name.startswith("src/") else 2
        return group, PurePosixPath(name)

    return {name: renamed[name] for name in sorted(renamed, key=place)}


def undeclared(files: Iterable[str]) -> list[str]:
    """The files (repo paths) declared on neither side."""
    return sorted(f for f in files if f not in NUMERIC and f not in NOT_NUMERIC)


def is_numeric(file: str) -> bool:
    """True for a numeric file and for an undeclared one (the safe side)."""
    return file not in NOT_NUMERIC


def table() -> str:
    """The declaration as a Markdown table, numeric files first (docs/pipeline.md)."""
    rows = ["| file | numeric | why |", "| --- | --- | --- |"]
    for side, files in (("yes", NUMERIC), ("no", NOT_NUMERIC)):
        rows += [f"| `{name}` | {side} | {files[name]} |" for name in sorted(files)]
    return "\n".join(rows) + "\n"
