"""Where the default `dvc repro` spends its time, against an earlier commit (run by hand).

    python benchmarks/profile_repro.py --against REV [--original PATH] [--steps 40]
        [--repeats 3] [--repro]

Every number printed is a ratio or a share, measured side by side in one run:

1. *Phases.* For each width of params.yaml's grid: one training step split into data
   (indexing the batch), forward (and loss), backward and optimizer step; the whole
   loop (`train.run_epoch`) over `--steps` batches; one checkpoint save; and one
   checkpoint's evaluation split into the error passes, the Fourier bound (sigma_upper),
   Lanczos (sigma_lower) and the rest of the bounds (eval_checkpoint.sigma_times).
   Each code version (this checkout, and a git worktree of REV) is measured in fresh
   processes, alternating, `--repeats` times (medians), on its own params.yaml, with
   its own pinned kernels.
2. *Stages.* Each version's stages projected from its phases and its params (epochs,
   checkpoints, train-set size): the share of each stage and the ratio of the totals.
   A fresh clone runs only check, prepare and train (evaluate's and figures' outputs are
   committed and their deps come out the same), so that total is printed apart.
3. *The original code* (`--original PATH`, a checkout of lianegalanti/gen): its training
   step (ConvNet_WN_3: the same network with biases, batch 32, SGD, MSE on one-hot
   targets, as its train.py runs it) against ours, in one process.
4. `--repro`: the real thing. Each version is cloned, its `dvc repro` run from scratch
   (no DVC cache), and the seconds between DVC's "Running stage" lines give each stage's
   share; the ratio of the wall times is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("data", "forward", "backward", "step")
EVAL = ("errors", "fourier", "lanczos", "bounds_rest")


def _clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _phases(model, opt, loss, train, batch: int, steps: int) -> dict[str, float]:
    """Seconds per training step of each phase, over `steps` steps (CPU: no sync needed)."""
    import torch
    totals = dict.fromkeys(PHASES, 0.0)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    model.train()
    for i in range(steps):
        t0 = time.perf_counter()
        idx = order[i * batch:(i + 1) * batch]
        xb, yb = train.x[idx], train.y[idx]
        t1 = time.perf_counter()
        value = loss(model(xb), yb)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        value.backward()
        t3 = time.perf_counter()
        opt.step()
        t4 = time.perf_counter()
        for name, dt in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[name] += dt
    return {k: v / steps for k, v in totals.items()}


def _evaluation(model, cfg, stats, train, test) -> dict[str, float]:
    """Seconds of one checkpoint's evaluation, by part: the error passes as the evaluate
    stage times them, then the bounds part cold, split as eval_checkpoint.sigma_times does."""
    from eval_checkpoint import sigma_times  # this folder: sys.path[0]

    from normbounds.measure.network import eval_mode, read_network
    from normbounds.measure.passes import data_pass
    from normbounds.pipeline.evaluate import evaluate_model
    timings: dict[str, float] = {}
    evaluate_model(model, stats, cfg, train, test, cfg.train.loss, None, timings)
    network = read_network(model, tuple(stats["input_shape"]))
    with eval_mode(network.module):
        patch = data_pass(network, train.x, batch_size=network.batch_size(
            cfg.bound.eval_batch_size)).patch_norms
    fourier, lanczos, bounds = sigma_times(model, cfg, stats, patch)
    return {"errors": timings["errors"], "fourier": fourier, "lanczos": lanczos,
            "bounds_rest": max(bounds - fourier - lanczos, 0.0)}


def _original_step(clone: Path, width: int, train, cfg, steps: int) -> float:
    """Seconds per training step of the original code's ConvNet_WN_3 and loop body."""
    from types import SimpleNamespace

    import torch
    import torch.nn.functional as F
    sys.path.insert(0, str(clone))
    from models.convnet_wn_3 import ConvNet_WN_3
    net = ConvNet_WN_3(SimpleNamespace(num_input_channels=1, width=width,
                                       num_output_classes=10))
    tc, batch = cfg.train, cfg.train.batch_size
    opt = torch.optim.SGD(net.parameters(), lr=tc.lr, momentum=tc.momentum,
                          weight_decay=tc.weight_decay)
    loss_function = torch.nn.MSELoss()
    start = time.perf_counter()
    for i in range(steps):
        images, labels = train.x[i * batch:(i + 1) * batch], train.y[i * batch:(i + 1) * batch]
        opt.zero_grad()
        outputs, _ = net(images)
        loss = loss_function(outputs, F.one_hot(labels, 10).float())
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def _width_row(cfg, stats, train, test, depth: int, width: int, steps: int,
               original: Path | None) -> dict[str, float]:
    """Every phase of one network of the grid, seconds."""
    import torch

    from normbounds.pipeline import checkpoints
    from normbounds.pipeline.losses import LOSSES
    from normbounds.pipeline.models import arch_for, build
    from normbounds.pipeline.train import _rng_state, run_epoch
    tc = cfg.train
    loss = LOSSES[tc.loss](stats["num_classes"])
    torch.manual_seed(0)
    model = build(arch_for(depth, width, cfg.model, stats))
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum,
                          weight_decay=tc.weight_decay)
    row = _phases(model, opt, loss, train, tc.batch_size, steps)
    sub = train.take(torch.arange(steps * tc.batch_size))
    gen = torch.Generator().manual_seed(0)
    row["loop"] = _clock(lambda: run_epoch(model, opt, sub, tc.batch_size, loss, gen,
                                           "profile")) / steps
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(tc.milestones), gamma=tc.lr_factor)
    state = {"epoch": 1, "arch": model.arch.to_dict(), "config": {}, "history": [],
             "model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "rng": _rng_state(gen)}
    with tempfile.TemporaryDirectory() as tmp:  # a checkpoint, as train.train_entry saves it
        row["save"] = _clock(lambda: checkpoints.save(state, Path(tmp)))
        row["save_resume"] = _clock(lambda: checkpoints.save_resume(state, Path(tmp)))
    row |= _evaluation(model, cfg, stats, train, test)
    if original is not None:
        row["original_step"] = _original_step(original, width, train, cfg, steps)
    return row


def worker(steps: int, original: Path | None) -> dict:
    """Everything measured in this process, for the code on sys.path and ./params.yaml."""
    t0 = time.perf_counter()
    from normbounds.reproducibility import pin_kernels  # in every layout; before torch loads

    pin_kernels()  # what importing normbounds.pipeline (or, before, normbounds) does
    import torch  # noqa: F401
    imported = time.perf_counter() - t0
    from old_layout import allow  # this folder: sys.path[0]

    allow()  # a revision from before the pipeline/ package

    from normbounds.pipeline import checkpoints
    from normbounds.pipeline.config import load_params
    from normbounds.pipeline.data import prepare
    from normbounds.pipeline.runtime import setup_torch
    cfg = load_params("params.yaml")
    setup_torch(cfg.base)
    t1 = time.perf_counter()
    train, test, stats = prepare(cfg.data)
    out = {"import": imported, "prepare": time.perf_counter() - t1, "m": len(train),
           "epochs": cfg.train.epochs, "batch": cfg.train.batch_size, "widths": {},
           "saves": len(checkpoints.save_epochs(cfg.train.epochs, cfg.train.save_every))}
    for width in cfg.grid.widths:
        for depth in cfg.grid.depths:
            out["widths"][f"{depth}-{width}"] = _width_row(cfg, stats, train, test, depth,
                                                           width, steps, original)
    return out


def _measure(tree: Path, steps: int, original: Path | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--steps", str(steps)]
    if original is not None:
        cmd += ["--original", str(original)]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"profile worker in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median(runs: list[dict]) -> dict:
    """Medians, key by key, of the workers' nested results."""
    first = runs[0]
    if isinstance(first, dict):
        return {k: _median([r[k] for r in runs]) for k in first}
    return statistics.median(runs) if isinstance(first, float) else first


def _stages(p: dict) -> dict[str, float]:
    """A version's stages, projected from its phases (seconds, summed to shares later)."""
    steps = -(-p["m"] // p["batch"])  # batches per epoch
    out = {"check": p["import"], "prepare": p["import"] + p["prepare"]}
    for name, w in p["widths"].items():
        resumes = p["saves"] - 1  # every save but the last also writes the resume state
        out[f"train@{name}"] = (p["import"] + p["epochs"] * steps * w["loop"]
                                + p["saves"] * w["save"] + resumes * w["save_resume"])
        out[f"evaluate@{name}"] = p["import"] + p["saves"] * sum(w[k] for k in EVAL)
    return out


def _share(value: float | None, total: float | None, width: int) -> str:
    return f"{value / total:{width}.1%}" if value is not None and total else f"{'-':>{width}}"


def _ratio(now: float, old: float | None) -> str:
    return f"{now / old:11.2f}" if old else f"{'-':>11}"


def report(before: dict, after: dict, rev: str) -> None:
    print("Phases of one training step (loop: train.run_epoch's step, against the sum of the"
          " four phases), of a checkpoint save and of one checkpoint's evaluation: shares of"
          f" each version's own group, and the ratio this checkout / {rev} (medians)")
    print(f"{'net':>6} {'part':>12} {rev[:10]:>10} {'now':>7} {'now/before':>11}")
    for name, now in after["widths"].items():
        old = before["widths"].get(name, {})
        for group in (PHASES + ("loop",), ("save", "save_resume"), EVAL):
            total = sum(now[k] for k in group if k != "loop")
            total_old = sum(old[k] for k in group if k != "loop") if old else None
            for key in group:
                print(f"{name:>6} {key:>12} {_share(old.get(key), total_old, 10)}"
                      f" {_share(now[key], total, 7)} {_ratio(now[key], old.get(key))}")
        if "original_step" in now:
            print(f"{name:>6} ours/original training step (lianegalanti/gen ConvNet_WN_3):"
                  f" {now['loop'] / now['original_step']:.2f}")
    old_s, now_s = _stages(before), _stages(after)
    fresh = ("check", "prepare") + tuple(k for k in now_s if k.startswith("train@"))
    print(f"\nStages, projected (m {before['m']} -> {after['m']}, epochs {before['epochs']}"
          f" -> {after['epochs']}, checkpoints per run {before['saves']} -> {after['saves']})")
    total_old, total_now = sum(old_s.values()), sum(now_s.values())
    print(f"{'stage':>14} {rev[:10]:>10} {'now':>7} {'now/before':>11}")
    for key in now_s:
        print(f"{key:>14} {_share(old_s.get(key), total_old, 10)}"
              f" {_share(now_s[key], total_now, 7)} {_ratio(now_s[key], old_s.get(key))}")
    fresh_old = sum(v for k, v in old_s.items() if k in fresh)
    fresh_now = sum(now_s[k] for k in fresh)
    print(f"all stages: now/before {total_now / total_old:.2f}; a fresh clone's stages"
          f" (check, prepare, train): now/before {fresh_now / fresh_old:.2f}")


def real_repro(rev: str, clone: Path) -> tuple[float, dict[str, float]]:
    """Wall seconds of `dvc repro` from scratch in a fresh clone at `rev`, and each stage's."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", rev], check=True)
    env = dict(os.environ, PYTHONPATH=str(clone / "src"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    stages, current, start = {}, None, time.perf_counter()
    last = start
    with subprocess.Popen(["dvc", "repro"], cwd=clone, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            found = re.match(r"Running stage '([^']+)'", line)
            if found:
                now = time.perf_counter()
                if current:
                    stages[current] = now - last
                current, last = found.group(1), now
    end = time.perf_counter()
    if current:
        stages[current] = end - last
    if proc.returncode != 0:
        sys.exit(f"dvc repro failed in {clone}")
    return end - start, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", help="the commit or tag to compare with")
    parser.add_argument("--original", type=Path, help="a checkout of lianegalanti/gen")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--repro", action="store_true", help="also time real fresh repros")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.steps, args.original)))
        return
    if not args.against:
        parser.error("--against REV is required (the commit or tag to compare with)")
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach",
                        str(old_tree), args.against], check=True)
        try:
            runs: dict[str, list[dict]] = {"before": [], "now": []}
            for _ in range(args.repeats):  # alternating: drift hits both alike
                runs["before"].append(_measure(old_tree, args.steps, None))
                runs["now"].append(_measure(ROOT, args.steps, args.original))
            report(_median(runs["before"]), _median(runs["now"]), args.against)
            if args.repro:
                old_wall, old_st = real_repro(args.against, Path(tmp) / "clone-before")
                now_wall, now_st = real_repro("HEAD", Path(tmp) / "clone-now")
                print("\nReal fresh-clone `dvc repro` (shares of each wall time)")
                for key in now_st | old_st:
                    a, b = old_st.get(key), now_st.get(key)
                    print(f"{key:>14} {a / old_wall if a else 0:10.1%}"
                          f" {b / now_wall if b else 0:7.1%}")
                print(f"wall time: now/before {now_wall / old_wall:.2f}")
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(old_tree)], check=False)


if __name__ == "__main__":
    main()
