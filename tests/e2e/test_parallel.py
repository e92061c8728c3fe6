"""`make repro JOBS=N` (normbounds.pipeline.parallel): the train stages concurrently, the same
result."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from pipeline_helpers import (
    TRAINED_PARAMS,
    dvc,
    make_pipeline,
    own_code,
    subprocess_env,
    tree_digest,
)


@pytest.mark.e2e
def test_parallel_training_gives_the_sequential_dvc_lock(trained_repo, tmp_path):
    """The session's trained repository is the sequential `dvc repro` of the same params."""
    sequential = trained_repo
    parallel = make_pipeline(tmp_path / "parallel", TRAINED_PARAMS, "studies")
    run = subprocess.run([sys.executable, "-m", "normbounds.pipeline.parallel", "--jobs", "2"],
                         cwd=parallel, env=subprocess_env(**own_code(parallel)),
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "parallel: 2 train stages, 2 at a time, then `dvc repro`" in run.stdout
    # the same lock, entry for entry; DVC writes the entries in the order the stages
    # finish, which is not the pipeline's even for a sequential repro (the committed locks)
    lock = yaml.safe_load((parallel / "dvc.lock").read_text())
    assert lock == yaml.safe_load((sequential / "dvc.lock").read_text())
    assert len(lock["stages"]) == 1 + 1 + 2 + 2 + 1
    # every output byte for byte; DVC's .gitignore files list the outputs in the order the
    # stages finished, so they are compared as sets of lines
    digests = [{k: v for k, v in tree_digest(w).items() if not k.endswith(".gitignore")}
               for w in (parallel, sequential)]
    assert digests[0] == digests[1]
    for ignore in sequential.rglob(".gitignore"):
        twin = parallel / ignore.relative_to(sequential)
        assert sorted(twin.read_text().splitlines()) == sorted(ignore.read_text().splitlines())
    assert "up to date" in dvc(parallel, "status").stdout
    assert sorted(p.name for p in (parallel / ".parallel").iterdir()) == [
        "train-2-2-0.log", "train-2-3-0.log"]


@pytest.mark.e2e
def test_bad_jobs_and_folders_are_one_line(tmp_path):
    for args, message in ((["--jobs", "0"], "error: --jobs 0: must be at least 1"),
                          (["--dir", str(tmp_path)], f"error: --dir {tmp_path}: no dvc.yaml"
                                                     " there")):
        run = subprocess.run([sys.executable, "-m", "normbounds.pipeline.parallel", *args],
                             capture_output=True, text=True, env=subprocess_env())
        assert run.returncode == 1 and run.stderr.strip() == message
