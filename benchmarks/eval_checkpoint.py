"""Per-checkpoint evaluation cost, run by hand (`make bench`).

Two parts, both on the prepared data of the current pipeline (run `dvc repro` first):

1. The widest default entry: the time per checkpoint of the error passes and of
   the bounds, averaged over all its checkpoints, and the ratio to one training
   epoch measured in the same process.
2. The Lipschitz constants at other widths (default 32, 128, 200): CONV-3-W is
   trained for a few epochs into a temporary folder (a checkpoint per epoch),
   and for every checkpoint, cold (nothing carried over from the previous one),
   it times sigma_upper (the Fourier-symbol bound), sigma_lower (dense or Lanczos) and the
   whole bounds part (both sigmas and all five bounds).

    python benchmarks/eval_checkpoint.py [--entry 3-32-0] [--widths 32 128 200] [--epochs 3]
"""

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from normbounds import bounds, checkpoints
from normbounds.config import Entry, load_params
from normbounds.data import load_split
from normbounds.evaluate import evaluate_run
from normbounds.fourier import fourier_upper
from normbounds.io import read_json
from normbounds.lipschitz import converged_lower
from normbounds.models import arch_for
from normbounds.network import describe, read_network
from normbounds.paths import Paths
from normbounds.runtime import resolve_device
from normbounds.train import file_digest, loss_fn, run_epoch, train_entry


def default_entry(cfg, paths, entry, stats, train, test, device) -> None:
    timings: dict[str, float] = {}
    rows = evaluate_run(cfg, paths.checkpoints(entry), stats, train, test, timings)
    n = len(rows)
    # one training epoch from the last checkpoint, with the run's own optimiser settings
    model, _ = checkpoints.load(checkpoints.list_epochs(paths.checkpoints(entry))[-1][1], device)
    tc = cfg.train
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum,
                          weight_decay=tc.weight_decay)
    loss = loss_fn(tc.loss, stats["num_classes"])
    start = time.perf_counter()
    run_epoch(model, opt, train, tc.batch_size, loss, torch.Generator().manual_seed(0), "bench")
    epoch_s = time.perf_counter() - start
    errors, bounds_s = timings["errors"] / n, timings["bounds"] / n
    print(f"entry {entry.name} on {device}, {n} checkpoints, m = {stats['m']}")
    print(f"per checkpoint: error passes {errors:.3f} s, bounds {bounds_s:.3f} s,"
          f" total {errors + bounds_s:.3f} s")
    print(f"one training epoch: {epoch_s:.3f} s")
    print(f"ratio (checkpoint evaluation / training epoch): {(errors + bounds_s) / epoch_s:.2f}")


def sigma_times(model, cfg, stats, patch_norms) -> tuple[float, float, float]:
    """(upper s, lower s, whole bounds part s) for one checkpoint, cold."""
    upper = lower = 0.0
    for spec in describe(model)[:-1]:
        weight = spec.weight.to(torch.float64)
        t0 = time.perf_counter()
        peak = fourier_upper(weight, spec.in_shape[1] + 2 * spec.padding)
        t1 = time.perf_counter()
        converged_lower(weight, spec.in_shape, spec.stride, spec.padding, peak,
                        tol=cfg.bound.lanczos_tol, max_steps=cfg.bound.lanczos_max_steps,
                        seed=spec.index)
        upper, lower = upper + t1 - t0, lower + time.perf_counter() - t1
    t0 = time.perf_counter()
    bounds.compute(model, stats=stats, params=cfg, patch_norms=patch_norms)
    return upper, lower, time.perf_counter() - t0


def widths_table(cfg, paths, stats, train, widths, epochs) -> None:
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, epochs=epochs, milestones=(), save_every=1))
    digest = file_digest(paths.train_data)
    print(f"\nLipschitz constants per checkpoint, cold, CONV-3-W after 0..{epochs} epochs"
          f" (seconds; lower = dense or Lanczos from the plane-wave start; bounds = both sigmas"
          " and all five bounds)")
    print(f"{'W':>5} {'epoch':>5} {'upper':>7} {'lower':>7} {'bounds':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for width in widths:
            entry = Entry(3, width, 0)
            arch = arch_for(3, width, cfg.model, stats)
            folder = Path(tmp) / entry.name
            train_entry(cfg, entry, train, arch, folder, digest, log=lambda _: None)
            totals = []
            for epoch, path in checkpoints.list_epochs(folder):
                model, _ = checkpoints.load(path)
                network = read_network(model, tuple(stats["input_shape"]))
                patch = bounds.measure_patch_norms(network, train.x,
                                                   network.batch_size(cfg.bound.eval_batch_size))
                up, low, whole = sigma_times(model, cfg, stats, patch)
                totals.append(whole)
                print(f"{width:>5} {epoch:>5} {up:>7.3f} {low:>7.3f} {whole:>7.3f}")
            print(f"{width:>5} {'mean':>5} {'':>7} {'':>7} {sum(totals) / len(totals):>7.3f}")


def main() -> None:
    paths = Paths()
    cfg = load_params(paths.params)
    widest = Entry(cfg.grid.depths[0], max(cfg.grid.widths), cfg.grid.seeds[0])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", default=widest.name)
    parser.add_argument("--widths", type=int, nargs="*", default=[32, 128, 200])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    device = resolve_device(cfg.base.device)
    stats = read_json(paths.stats)
    train = load_split(paths.train_data).to(device)
    test = load_split(paths.test_data).to(device)
    default_entry(cfg, paths, Entry.parse(args.entry), stats, train, test, device)
    if args.widths:
        widths_table(cfg, paths, stats, train, args.widths, args.epochs)


if __name__ == "__main__":
    main()
