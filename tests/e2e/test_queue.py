"""Variants in parallel on one machine with DVC's own queue (docs/cluster.md, "the DVC queue")."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from pipeline_helpers import dvc, make_pipeline, subprocess_env, tiny_params


@pytest.mark.e2e
def test_queued_weight_decays_run_in_parallel(tmp_path):
    params = tiny_params(grid={"widths": [2]}, train={"weight_decay": 0.003})
    work = make_pipeline(tmp_path / "repo", params)
    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
                   cwd=work, check=True)
    for wd in ("0.0", "0.01"):  # the commands of docs/cluster.md
        dvc(work, "exp", "run", "--queue", "-n", f"wd-{wd}", "-S", f"train.weight_decay={wd}")
    # the workers outlive `queue start` and keep any pipe open: give them a file
    with open(tmp_path / "queue.log", "w") as log:
        subprocess.run([sys.executable, "-m", "dvc", "queue", "start", "--jobs", "2"],
                       cwd=work, env=subprocess_env(), stdout=log, stderr=log, check=True)
    deadline = time.monotonic() + 600
    while True:
        status = dvc(work, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(2)
    dvc(work, "queue", "stop", check=False)
    assert status.count("Success") == 2, status
    rows = json.loads(dvc(work, "exp", "show", "--json").stdout)
    exps = {e["name"]: e for row in rows for e in row.get("experiments") or []}
    assert set(exps) == {"wd-0.0", "wd-0.01"}
    ours = {}
    for name, exp in exps.items():
        data = exp["revs"][0]["data"]
        assert data["params"]["params.yaml"]["data"]["train"]["weight_decay"] == float(name[3:])
        ours[name] = data["metrics"]["metrics/2-2-0.json"]["data"]["ours"]
    assert ours["wd-0.0"] != ours["wd-0.01"]  # each ran its own variant
