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

# the stage whose outputs (checkpoints) carry a code fingerprint
TRAIN_STAGE = "train"

PIPE = "src/normbounds/pipeline/"

NUMERIC: dict[str, str] = {
    "stages/train.py": "chooses the data, the architecture and the folder of the run",
    f"{PIPE}__init__.py": "pins the CPU kernels before torch loads",
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
    "src/normbounds/__init__.py": "the package's docstring and version; pins nothing",
    f"{PIPE}paths.py": "where files live; the train data's digest is in the fingerprint",
    f"{PIPE}imports.py": "computes this closure; a file joining or leaving it changes the"
                         " fingerprint's list of digests",
    f"{PIPE}numeric.py": "this declaration; moving a file between the lists changes the"
                         " fingerprint's list of digests",
    "src/normbounds/measure/__init__.py": "the API's table of public names, loaded lazily",
    "src/normbounds/measure/options.py": "BoundConfig: evaluation options, not read by training",
    "src/normbounds/measure/statistics.py": "P, S and X of the bounds; training reads none",
}

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
