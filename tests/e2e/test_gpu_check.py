"""benchmarks/gpu_check.py's small variant, so that the one device check cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
def test_the_device_check_runs_its_small_variant_and_writes_json_and_a_table(tmp_path):
    out = tmp_path / "gpu_check.json"
    run = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--small", "--out",
                          str(out)], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["variant"] == "small" and result["cuda_tests"]["exit"] in (0, 5)
    steps = result["steps"]
    assert {(r["precision"], r["compile"]) for r in steps} == {("fp32", "none"), ("bf16", "none")}
    assert all(r["s_per_step"] > 0 and r["tflops"] > 0 for r in steps)
    assert [r["jobs"] for r in result["scaling"]] == [1, 2]
    assert all(r["steps_per_s"] > 0 for r in result["scaling"])
    ev = result["evaluation"]
    assert ev["m"] == 200 and min(ev["errors_s"], ev["bounds_s"], ev["sigma_lower_s"]) > 0
    proj = result["projection"]
    assert proj["paper_h"] == pytest.approx(5 * proj["one_seed_h"])
    if result["device"] == "cpu":  # no measurement on a GPU: the exact reproduction
        assert proj["recommend"] == {"precision": "fp32", "compile": "none"}
    table = out.with_suffix(".md").read_text()
    assert "| W | precision | compile | s/step | TFLOP/s | of peak |" in table
    assert table in run.stdout
    recommend = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--recommend",
                                "--out", str(out)], capture_output=True, text=True, cwd=REPO)
    assert recommend.stdout.strip() == (f"-S train.precision={proj['recommend']['precision']}"
                                        f" -S train.compile={proj['recommend']['compile']}")
