"""slurm/submit.sh: flags and errors, and a tiny grid on a real single-node Slurm."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from normbounds.pipeline.config import load_params

from pipeline_helpers import (
    REPO,
    TRAINED_PARAMS,
    dvc,
    make_pipeline,
    own_code,
    subprocess_env,
    tiny_params,
)
from slurm_cluster import SlurmCluster, SlurmUnavailable

# one Slurm cluster at a time: both tests run on the same pytest-xdist worker
pytestmark = pytest.mark.xdist_group("slurm")

SUBMIT = "slurm/submit.sh"


def _submit(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / SUBMIT), *args], cwd=cwd,
                          env=subprocess_env(**env), capture_output=True, text=True, timeout=120)


def test_help_names_every_cluster_option():
    proc = _submit("--help")
    assert proc.returncode == 0
    for flag in ("--partition", "--account", "--time", "--gres", "--cpus", "--mem",
                 "--max-concurrent", "--sbatch-args", "--dir", "--dry-run"):
        assert flag in proc.stdout, flag


@pytest.mark.parametrize(("args", "message"), [
    (["--bogus"], "error: unknown option '--bogus' (see --help)"),
    (["--cpus", "two"], "error: --cpus / NB_CPUS = 'two': must be a positive integer"),
    (["--max-concurrent", "0"], "error: --max-concurrent / NB_MAX_CONCURRENT = '0'"),
    (["--dir", "/nonexistent"], "error: --dir / NB_DIR = '/nonexistent': no dvc.yaml there"),
    (["--time"], "error: --time needs a value"),
    (["--time", "--dry-run"], "error: --time needs a value"),
])
def test_bad_flags_fail_before_submitting(args, message):
    proc = _submit("--dry-run", *args)
    assert proc.returncode == 2 and message in proc.stderr


def test_dry_run_one_array_task_per_train_stage():
    proc = _submit("--dry-run", "-j", "2", "-g", "gpu:1", "-p", "gpu", "-t", "4:00:00",
                   NB_MEM="8G", NB_SBATCH_ARGS="--qos=long --nice=5")
    assert proc.returncode == 0, proc.stderr
    n = len(load_params(REPO / "params.yaml").entries())
    prepare, train, rest = proc.stderr.splitlines()
    assert f"--array=0-{n - 1}%2" in train and "--dependency=afterok:<nb-prepare>" in train
    assert "--gres=gpu:1" in train and "--gres=gpu:1" in rest and "--gres" not in prepare
    for line in (prepare, train, rest):
        assert "--partition=gpu" in line and "--time=4:00:00" in line and "--mem=8G" in line
        assert "--qos=long --nice=5" in line
    assert "--requeue --signal=B:USR1@120" in train
    assert "--dependency=afterok:<nb-train>" in rest and rest.endswith("job.sh rest")
    assert f"a train array of {n} tasks" in proc.stdout and "nothing submitted" in proc.stdout
    assert "submitted from" not in proc.stdout


def test_bad_params_stop_the_submission(tmp_path):
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    (tmp_path / "params.yaml").write_text(json.dumps(tiny_params(train={"lr": -1})))
    proc = _submit("--dry-run", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: params.yaml: train.lr = -1.0 is invalid: must be > 0"


def _wait_for(jobs: list[str], env: dict[str, str], timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue = subprocess.run(["squeue", "-h", "-j", ",".join(jobs)], env=env,
                               capture_output=True, text=True).stdout
        if not queue.strip():
            return
        time.sleep(1)
    pytest.fail(f"Slurm jobs {jobs} still queued after {timeout} s")


@pytest.fixture
def slurm_env(tmp_path):
    """A real single-node Slurm for the test; skipped, with the reason, where it cannot start."""
    cluster = SlurmCluster(tmp_path / "slurm")
    try:
        env = cluster.start()
    except SlurmUnavailable as err:
        cluster.stop()
        pytest.skip(f"Slurm cannot start on this machine: {err}")
    yield env
    cluster.stop()


@pytest.mark.e2e
def test_tiny_grid_on_slurm_equals_local_repro(tmp_path, slurm_env, trained_repo):
    local = trained_repo  # the session's `dvc repro` of the same params
    work = make_pipeline(tmp_path / "cluster_repo", TRAINED_PARAMS, "slurm")
    start = time.monotonic()
    proc = subprocess.run(["bash", "slurm/submit.sh"], cwd=work,
                          env=subprocess_env(SLURM_CONF=slurm_env["SLURM_CONF"], **own_code(work)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(2 tasks)" in proc.stdout
    jobs = next(work.glob(".slurm/*/jobs.txt")).read_text().split()
    _wait_for(jobs, slurm_env)
    slurm_s = time.monotonic() - start
    for job in jobs:
        states = re.findall(r"JobState=(\w+)", subprocess.run(
            ["scontrol", "show", "job", job], env=slurm_env, capture_output=True,
            text=True).stdout)
        assert states and set(states) == {"COMPLETED"}, (job, states, _logs(work))
    print(f"\ntiny grid on Slurm: {slurm_s:.1f} s")

    assert "up to date" in dvc(work, "status").stdout
    for entry in ("2-2-0", "2-3-0"):
        assert sorted(p.name for p in (work / "checkpoints" / entry).iterdir()) == [
            "epoch_0000.pt", "epoch_0001.pt", "epoch_0002.pt"]
        for rel in (f"results/{entry}.csv", f"metrics/{entry}.json",
                    f"logs/{entry}/metrics.json"):
            assert (work / rel).read_bytes() == (local / rel).read_bytes(), rel
    assert (work / "reports/summary.csv").read_bytes() == (
        local / "reports/summary.csv").read_bytes()


def _logs(work: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}"
                     for p in sorted(work.glob(".slurm/*/*.out")))


@pytest.mark.e2e
def test_train_task_near_its_time_limit_is_requeued_and_resumes(tmp_path, slurm_env):
    params = tiny_params(data={"train_size": 1000}, grid={"widths": [2]},
                         train={"epochs": 6, "batch_size": 10, "milestones": [4]})
    work = make_pipeline(tmp_path / "cluster_repo", params, "slurm")
    proc = subprocess.run(["bash", "slurm/submit.sh"], cwd=work,
                          env=subprocess_env(SLURM_CONF=slurm_env["SLURM_CONF"], **own_code(work)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = next(work.glob(".slurm/*/jobs.txt")).read_text().split()
    deadline = time.monotonic() + 300
    while not (work / "checkpoints/2-2-0/epoch_0002.pt").exists():
        assert time.monotonic() < deadline, _logs(work)
        time.sleep(0.2)
    # what Slurm does at --signal=B:USR1@120 before the time limit
    subprocess.run(["scancel", "--batch", "--signal=USR1", f"{jobs[1]}_0"], env=slurm_env,
                   check=True)
    _start_now_when_requeued(f"{jobs[1]}_0", slurm_env)
    _wait_for(jobs, slurm_env)
    log = next(work.glob(".slurm/*/train-0.out")).read_text()
    assert "time limit near: requeueing job" in log
    assert re.search(r"train@2-2-0: resuming from epoch [2-5] of 6", log), log
    assert "up to date" in dvc(work, "status").stdout
    assert json.loads((work / "logs/2-2-0/metrics.json").read_text())["step"] == 6


def _start_now_when_requeued(job: str, env: dict[str, str]) -> None:
    """Slurm delays a requeued job's start (BeginTime); a test need not wait for that."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env,
                               capture_output=True, text=True).stdout.strip()
        if state == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env,
                           check=True)
            return
        time.sleep(0.2)
    pytest.fail(f"job {job} was not requeued within 60 s")
