"""The speed cost of the pinned CPU kernels, run by hand (`make bench-kernels`).

Pinned (the default: the same numbers on every x86-64 CPU, docs/reproducibility.md)
against native (NORMBOUNDS_NATIVE_KERNELS=1: each CPU's own
kernels). Each measurement runs in a fresh process, because the kernels are fixed
when torch loads; the two settings alternate, `--repeats` times, and the medians
are compared side by side:

- train: `--epochs` epochs of CONV-3-<width> on the prepared data (run `dvc repro`
  first), the way the train stage runs them (base.threads threads);
- evaluate: the whole evaluation (error passes, both sigmas, every bound) of the
  last checkpoint of that run.

    python benchmarks/kernels.py [--width 16] [--epochs 3] [--repeats 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import dataclasses, json, sys, tempfile, time
from pathlib import Path
import normbounds.pipeline  # first: pins the kernels unless NORMBOUNDS_NATIVE_KERNELS=1
import torch
from normbounds.pipeline import checkpoints
from normbounds.pipeline.config import Entry, load_params
from normbounds.pipeline.data import load_split
from normbounds.pipeline.evaluate import evaluate_model
from normbounds.io import read_json
from normbounds.pipeline.models import arch_for
from normbounds.pipeline.paths import Paths
from normbounds.pipeline.runtime import setup_torch
from normbounds.pipeline.train import file_digest, train_entry

width, epochs = int(sys.argv[1]), int(sys.argv[2])
paths = Paths()
cfg = load_params(paths.params)
cfg = dataclasses.replace(cfg, train=dataclasses.replace(
    cfg.train, epochs=epochs, milestones=(), save_every=epochs))
setup_torch(cfg.base)
stats = read_json(paths.stats)
train, test = load_split(paths.train_data), load_split(paths.test_data)
entry = Entry(3, width, 0)
with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    train_entry(cfg, entry, train, arch_for(3, width, cfg.model, stats), Path(tmp),
                file_digest(paths.train_data), log=lambda _: None)
    t1 = time.perf_counter()
    model, meta = checkpoints.load(checkpoints.list_epochs(Path(tmp))[-1][1])
    evaluate_model(model, stats, cfg, train, test, meta["config"]["train"]["loss"])
    t2 = time.perf_counter()
print(json.dumps({"train": t1 - t0, "evaluate": t2 - t1,
                  "cpu": torch.backends.cpu.get_cpu_capability()}))
"""


def measure(native: bool, width: int, epochs: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NORMBOUNDS_NATIVE_KERNELS"}
    if native:
        env["NORMBOUNDS_NATIVE_KERNELS"] = "1"
    out = subprocess.run([sys.executable, "-c", WORKER, str(width), str(epochs)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"pinned": [], "native": []}
    for _ in range(args.repeats):  # alternate, so drifting machine load hits both alike
        for name in runs:
            runs[name].append(measure(name == "native", args.width, args.epochs))
    print(f"CONV-3-{args.width}, {args.epochs} epochs, medians of {args.repeats} fresh"
          f" processes (CPU kernels: pinned {runs['pinned'][0]['cpu']},"
          f" native {runs['native'][0]['cpu']})")
    print(f"{'part':>10} {'pinned s':>9} {'native s':>9} {'pinned/native':>14}")
    for part in ("train", "evaluate"):
        pinned = statistics.median(r[part] for r in runs["pinned"])
        native = statistics.median(r[part] for r in runs["native"])
        print(f"{part:>10} {pinned:>9.2f} {native:>9.2f} {pinned / native:>14.2f}")


if __name__ == "__main__":
    main()
