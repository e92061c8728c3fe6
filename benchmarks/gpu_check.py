"""The one device check (`make gpu-check`): everything the GPU path needs measured, in one
command of at most 8 minutes on one H100/H200, written to one JSON file and a table.

1. the CUDA tests (`pytest -m cuda`: determinism, GPU = CPU bounds and sigmas);
2. seconds per batch-32 training step and TFLOP/s against the device's peak, for
   CONV-3-{200,600,1000} on MNIST-shaped data made on the device, under every
   train.precision x train.compile;
3. aggregate training throughput of N = 1, 2, 4, 8 train processes sharing the device;
4. one CONV-3-1000 checkpoint evaluated on 60,000 images: error passes, sigma_upper,
   sigma_lower, every bound;
5. the projection of `make paper` and of one seed of it, and the precision and compile
   mode the paper profile should use (`--recommend` prints them as `-S` overrides).

Without CUDA it runs a small variant (width 8, a few steps, 200 images), which
the test suite runs, so that the script cannot rot. Parts that would pass the time
budget are skipped and say so.
"""

from __future__ import annotations

import normbounds.pipeline  # noqa: F401 (first: importing it pins torch's CPU kernels)

# isort: split
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from eval_checkpoint import sigma_times

from normbounds.io import write_json, write_text
from normbounds.measure.assessment import assess
from normbounds.measure.options import BoundConfig
from normbounds.pipeline.config import BaseConfig
from normbounds.pipeline.models import Arch, GridNet
from normbounds.pipeline.precision import COMPILE_MODES, PRECISIONS
from normbounds.pipeline.runtime import setup_torch

from paper_scale import PAPER, PEAK_TFLOPS, forward_flops, peak, step_seconds

HERE = Path(__file__).resolve().parent
FULL = {"widths": (200, 600, 1000), "steps": 100, "jobs": (1, 2, 4, 8), "m": 60000,
        "precisions": tuple(PRECISIONS), "compile": tuple(COMPILE_MODES)}
SMALL = {"widths": (8,), "steps": 3, "jobs": (1, 2), "m": 200,
         "precisions": ("fp32", "bf16"), "compile": ("none",)}


def cuda_tests() -> dict:
    start = time.perf_counter()
    tests = HERE.parent / "tests" / "pipeline" / "test_cuda.py"
    run = subprocess.run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p",
                          "no:cacheprovider", str(tests)],
                         capture_output=True, text=True, cwd=HERE.parent)
    summary = (run.stdout.strip().splitlines() or ["no output"])[-1]
    return {"exit": run.returncode, "summary": summary, "seconds": time.perf_counter() - start}


def step_matrix(plan: dict, device: torch.device, deadline: float) -> list[dict]:
    """Every width x precision x compile mode, uncompiled first (the budget may end it)."""
    combos = [(p, c) for c in plan["compile"] for p in plan["precisions"]]
    rows = []
    for prec, mode in combos:
        for width in plan["widths"]:
            row = {"width": width, "precision": prec, "compile": mode}
            if time.perf_counter() > deadline:
                rows.append(row | {"skipped": "time budget"})
                continue
            sec = step_seconds(width, plan["steps"], device, prec, mode)
            rate = 3 * forward_flops(width) * 32 / sec / 1e12  # forward + backward
            rows.append(row | {"s_per_step": sec, "tflops": rate,
                               "of_peak": rate / _peak(device, prec)})
    return rows


def _peak(device: torch.device, precision: str) -> float:
    """The data-sheet dense peak of `precision` (fp32: the non-tensor-core rate) on a
    known GPU; elsewhere the measured float32 matmul rate."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in PEAK_TFLOPS.items():
            if key in name:
                return peaks[precision]
    return peak(device)[0]


def scaling(plan: dict, width: int, deadline: float) -> list[dict]:
    """N worker processes, each `steps` steps at `width`: aggregate steps per second."""
    rows = []
    for jobs in plan["jobs"]:
        if time.perf_counter() > deadline:
            rows.append({"jobs": jobs, "skipped": "time budget"})
            continue
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, __file__, "--worker", str(width),
                                   str(plan["steps"] * 4)], stdout=subprocess.PIPE, text=True)
                 for _ in range(jobs)]
        per = [float(p.communicate()[0].split()[-1]) for p in procs]
        wall = time.perf_counter() - start
        # the workers overlap: the device's aggregate rate is the sum of theirs
        rows.append({"jobs": jobs, "width": width, "steps_per_s": sum(1 / s for s in per),
                     "wall_s": wall})
    return rows


def evaluation(width: int, m: int, device: torch.device) -> dict:
    """One checkpoint-sized network on m MNIST-shaped images made on the device."""
    model = GridNet(Arch((1, 28, 28), 10, 3, width)).to(device).eval()
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(m, 1, 28, 28, generator=gen, device=device)
    y = torch.arange(m, device=device) % 10
    timings: dict[str, float] = {}
    row = assess(model, x, y, timings=timings)
    stats = {"m": m, "num_classes": 10, "P": row["data_p"], "S": row["data_s"],
             "input_shape": [1, 28, 28]}
    patch = [row[f"b_l{i}"] for i in range(1, 5)]
    upper, lower, whole = sigma_times(model, argparse.Namespace(bound=BoundConfig()), stats,
                                      patch)
    return {"width": width, "m": m, "errors_s": timings["errors"], "bounds_s": whole,
            "sigma_upper_s": upper, "sigma_lower_s": lower,
            "ours_corrected": row["ours_corrected"]}


def projection(matrix: list[dict], scale: list[dict], ev: dict, device: torch.device) -> dict:
    """Hours of `make paper` (and of one seed) from the fastest measured step per width,
    with the N-process speed-up, plus the evaluation of every checkpoint."""
    done = [r for r in matrix if "s_per_step" in r]
    best = {w: min((r for r in done if r["width"] == w), key=lambda r: r["s_per_step"])
            for w in {r["width"] for r in done}}
    steps = PAPER["epochs"] * PAPER["m"] / PAPER["batch"]
    speedup = max((r["steps_per_s"] for r in scale if "steps_per_s" in r), default=1.0) / next(
        (r["steps_per_s"] for r in scale if r.get("jobs") == 1 and "steps_per_s" in r), 1.0)
    # a width not measured (the small variant): its step time scaled by the forward FLOPs
    widest = max(best)
    train_s = sum(best.get(w, best[widest])["s_per_step"] * max(1.0, forward_flops(w)
                  / forward_flops(widest)) * steps for w in PAPER["widths"])
    eval_s = sum((ev["errors_s"] + ev["bounds_s"]) * PAPER["m"] / ev["m"]
                 * forward_flops(w) / forward_flops(ev["width"]) for w in PAPER["widths"])
    eval_s *= PAPER["checkpoints"]
    seed_h = (train_s + eval_s) / 3600
    chosen = best[widest] if device.type == "cuda" else {"precision": "fp32",
                                                            "compile": "none"}
    return {"one_seed_h": seed_h, "one_seed_parallel_h": (train_s / speedup + eval_s) / 3600,
            "paper_h": seed_h * PAPER["seeds"], "n_process_speedup": speedup,
            "recommend": {"precision": chosen["precision"], "compile": chosen["compile"]},
            "basis": {str(w): {k: r[k] for k in ("precision", "compile", "s_per_step")}
                      for w, r in sorted(best.items())}}


def table(result: dict) -> str:
    """The markdown table of benchmarks/README.md."""
    lines = [f"device: {result['device']} ({result['variant']} variant), {result['wall_s']:.0f} s",
             f"CUDA tests: {result['cuda_tests']['summary']}", "",
             "| W | precision | compile | s/step | TFLOP/s | of peak |", "| --- | --- | --- |"
             " --- | --- | --- |"]
    for r in result["steps"]:
        cells = (f"{r['s_per_step']:.4g} | {r['tflops']:.3g} | {r['of_peak']:.1%}"
                 if "s_per_step" in r else f"{r['skipped']} | | ")
        lines.append(f"| {r['width']} | {r['precision']} | {r['compile']} | {cells} |")
    lines += ["", "| processes | steps/s (all) |", "| --- | --- |"]
    lines += [f"| {r['jobs']} | {r.get('steps_per_s', float('nan')):.4g} |"
              for r in result["scaling"]]
    ev, pr = result["evaluation"], result["projection"]
    lines += ["", f"evaluation of CONV-3-{ev['width']} on {ev['m']} images: error passes"
              f" {ev['errors_s']:.3g} s, sigma_upper {ev['sigma_upper_s']:.3g} s, sigma_lower"
              f" {ev['sigma_lower_s']:.3g} s, all bounds {ev['bounds_s']:.3g} s",
              f"projection: one seed of `make paper` {pr['one_seed_h']:.3g} h"
              f" ({pr['one_seed_parallel_h']:.3g} h with {pr['n_process_speedup']:.2f}x from"
              f" parallel processes), all seeds {pr['paper_h']:.3g} h; recommended"
              f" train.precision={pr['recommend']['precision']}"
              f" train.compile={pr['recommend']['compile']}"]
    return "\n".join(lines) + "\n"


def run(plan: dict, variant: str, budget: float) -> dict:
    start = time.perf_counter()
    device = setup_torch(BaseConfig())  # threads and deterministic algorithms, as training
    deadline = start + budget
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
              else "cpu", "variant": variant, "cuda_tests": cuda_tests()}
    result["steps"] = step_matrix(plan, device, deadline - 0.4 * budget)
    result["scaling"] = scaling(plan, plan["widths"][0], deadline - 0.25 * budget)
    result["evaluation"] = evaluation(plan["widths"][-1], plan["m"], device)
    result["projection"] = projection(result["steps"], result["scaling"],
                                      result["evaluation"], device)
    result["wall_s"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", action="store_true", help="the CPU variant (default"
                        " without CUDA)")
    parser.add_argument("--out", type=Path, default=HERE / "gpu_check.json")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for all parts")
    parser.add_argument("--recommend", action="store_true", help="print the paper profile's"
                        " -S overrides from --out (nothing: fp32, the exact reproduction)")
    parser.add_argument("--worker", nargs=2, type=int, metavar=("WIDTH", "STEPS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:  # one process of the scaling part: seconds per step, printed
        print(step_seconds(args.worker[0], args.worker[1], setup_torch(BaseConfig())))
        return
    if args.recommend:
        if args.out.is_file():
            rec = json.loads(args.out.read_text())["projection"]["recommend"]
            print(f"-S train.precision={rec['precision']} -S train.compile={rec['compile']}")
        return
    small = args.small or not torch.cuda.is_available()
    result = run(SMALL if small else FULL, "small" if small else "full", args.budget)
    write_json(result, args.out)
    write_text(table(result), args.out.with_suffix(".md"))
    print(table(result), end="")


if __name__ == "__main__":
    main()
