"""`python -m normbounds.pipeline.parallel --jobs N`: the grid's train stages concurrently on one
machine (one GPU or many cores), then the rest of the pipeline: `make repro JOBS=N`.

The same three steps as slurm/submit.sh, run locally: `dvc repro prepare` (and `check`
before it); the train@<entry> stages (from `dvc stage list`) N at a time, each as
`dvc --wait-for-lock repro -s train@<entry>` (DVC holds its lock only while it reads and
writes dvc.lock, so the trainings overlap); then `dvc repro` (evaluate, figures). The
result is the same dvc.lock, entry for entry, as a sequential `dvc repro`
(tests/e2e/test_parallel.py).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from normbounds.errors import NormboundsError
from normbounds.pipeline.runtime import run_stage


class ParallelError(NormboundsError):
    """A dvc command of the parallel run failed."""


def _dvc(folder: Path, *args: str, log: Path | None = None) -> None:
    """Run dvc in `folder`; its output goes to `log` (or through); a failure is one line."""
    cmd = [sys.executable, "-m", "dvc", *args]
    if log is None:
        run = subprocess.run(cmd, cwd=folder)
    else:
        with open(log, "w") as sink:
            run = subprocess.run(cmd, cwd=folder, stdout=sink, stderr=subprocess.STDOUT)
    if run.returncode != 0:
        where = f"; its output is in {log}" if log else ""
        raise ParallelError(f"`dvc {' '.join(args)}` failed in {folder} (exit"
                            f" {run.returncode}){where}")


def train_stages(folder: Path) -> list[str]:
    out = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"],
                         cwd=folder, capture_output=True, text=True)
    if out.returncode != 0:
        raise ParallelError(f"{folder}: `dvc stage list` failed: "
                            + (out.stderr.strip().splitlines() or ["no message"])[-1])
    return [name for name in out.stdout.split() if name.startswith("train@")]


def repro(folder: Path, jobs: int) -> list[str]:
    """prepare, then the train stages `jobs` at a time, then everything else."""
    _dvc(folder, "repro", "prepare")
    stages = train_stages(folder)
    logs = folder / ".parallel"
    logs.mkdir(exist_ok=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        runs = [pool.submit(_dvc, folder, "--wait-for-lock", "repro", "-s", stage,
                            log=logs / f"{stage.replace('@', '-')}.log") for stage in stages]
        for run in runs:
            run.result()  # the first failure, named
    _dvc(folder, "repro")
    return stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2, help="train stages at a time")
    parser.add_argument("--dir", type=Path, default=Path("."), help="the pipeline folder")
    args = parser.parse_args()
    if args.jobs < 1:
        raise ParallelError(f"--jobs {args.jobs}: must be at least 1")
    if not (args.dir / "dvc.yaml").is_file():
        raise ParallelError(f"--dir {args.dir}: no dvc.yaml there")
    stages = repro(args.dir, args.jobs)
    print(f"parallel: {len(stages)} train stages, {args.jobs} at a time, then `dvc repro`")


if __name__ == "__main__":
    run_stage(main)
