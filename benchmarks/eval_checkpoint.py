"""Per-checkpoint evaluation cost, run by hand (`make bench`).

Three parts, all on the prepared data of the current pipeline (run `dvc repro` first):

1. The widest default entry: the time per checkpoint of the error passes and of
   the bounds, averaged over all its checkpoints, and the ratio to one training
   epoch measured in the same process.
2. With --original PATH (a clone of the original study's code,
   https://github.com/lianegalanti/gen): one CONV-3-W checkpoint (default W = 128)
   evaluated side by side, in this process (same threads and kernels), by this
   project (error passes and every bound, cold) and by the original code (its five
   bound functions and its train and test passes, as its training loop runs them
   at every saved epoch, on the same weights and the same digits written as MNIST
   IDX files), and the rate of the forward passes that dominate both.
3. The Lipschitz constants at other widths (default 32, 128, 200): CONV-3-W is
   trained for a few epochs into a temporary folder (a checkpoint per epoch),
   and for every checkpoint, cold (nothing carried over from the previous one),
   it times sigma_upper (the Fourier-symbol bound), sigma_lower (dense or Lanczos) and the
   whole bounds part (both sigmas and every bound of the registry).

    python benchmarks/eval_checkpoint.py [--entry 3-32-0] [--widths 32 128 200] [--epochs 3]
        [--original PATH --original-width 128]
"""

import argparse
import dataclasses
import importlib
import os
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from normbounds.io import read_json
from normbounds.measure import bounds
from normbounds.measure.fourier import fourier_upper
from normbounds.measure.lipschitz import converged_lower
from normbounds.measure.network import describe, eval_mode, read_network
from normbounds.measure.passes import data_pass
from normbounds.pipeline import checkpoints
from normbounds.pipeline.config import Entry, load_params
from normbounds.pipeline.data import load_split, load_splits
from normbounds.pipeline.evaluate import evaluate_model, evaluate_run
from normbounds.pipeline.losses import LOSSES
from normbounds.pipeline.models import arch_for
from normbounds.pipeline.paths import Paths
from normbounds.pipeline.runtime import resolve_device
from normbounds.pipeline.train import file_digest, run_epoch, train_entry

from paper_scale import forward_flops

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import write_mnist_files  # noqa: E402 (the tests' IDX writer)


def default_entry(cfg, paths, entry, stats, train, test, device) -> None:
    timings: dict[str, float] = {}
    rows = evaluate_run(cfg, paths.checkpoints(entry), stats, train, test, timings)
    n = len(rows)
    # one training epoch from the last checkpoint, with the run's own optimiser settings
    model, _ = checkpoints.load(checkpoints.list_epochs(paths.checkpoints(entry))[-1][1], device)
    tc = cfg.train
    opt = torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum,
                          weight_decay=tc.weight_decay)
    loss = LOSSES[tc.loss](stats["num_classes"])
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
    bounds.compute(model, stats=stats, params=cfg.bound, patch_norms=patch_norms)
    return upper, lower, time.perf_counter() - t0


def short_run(cfg, epochs: int):
    """cfg with a few epochs, a checkpoint after each, no learning-rate steps."""
    return dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, epochs=epochs, milestones=(), save_every=1))


def original_net(clone: Path, model, settings):
    """The original study's ConvNet_WN_3 (from the clone) holding `model`'s weights (its
    biases, which this project's CONV-L-H has not, set to zero)."""
    sys.path.insert(0, str(clone))
    net = importlib.import_module("models.convnet_wn_3").ConvNet_WN_3(settings)
    with torch.no_grad():
        for mine, theirs in zip(model.convs, (net.conv1, net.conv2, net.conv3), strict=True):
            weight = mine.parametrizations.weight
            theirs.weight_g.copy_(weight.original0.reshape(()))
            theirs.weight_v.copy_(weight.original1)
            theirs.bias.zero_()
        net.fc.weight.copy_(model.head.weight)
        net.fc.bias.zero_()
        net(torch.zeros(1, 1, 28, 28))  # weight norm recomputes .weight on a forward pass
    return net


def time_original(clone: Path, model, m: int, loss: str, folder: Path) -> dict[str, float]:
    """Seconds of each part of the original code's evaluation of one saved epoch, in the
    order its training loop runs them; its data from folder/data (MNIST IDX files)."""
    settings = SimpleNamespace(dataset_name="MNIST", set_size=m, num_output_classes=10,
                               num_input_channels=1, width=model.arch.width, device="cpu",
                               loss={"mse": "MSE", "ce": "CE"}[loss], mean=0.1307, std=0.3081)
    net = original_net(clone, model, settings)
    utils, train = importlib.import_module("utils"), importlib.import_module("train")
    here = Path.cwd()
    os.chdir(folder)  # the original reads ./data
    try:
        loaders = [getattr(utils, f"get_{name}_dataloader")(
            "MNIST", settings.mean, settings.std, settings, num_workers=2, batch_size=32,
            shuffle=True) for name in ("training", "test")]
        parts = {"ours": lambda: utils.our_total_bound(net, loaders[0], settings),
                 "golowich": lambda: utils.golowich_total_bound(net, settings, loaders[0]),
                 "ledent": lambda: utils.ledent_total_bound(net, settings, loaders[0]),
                 "sedghi": lambda: utils.sedghi_total_bound(net, settings),
                 "graf": lambda: utils.graf_total_bound(net, loaders[0], settings),
                 "train pass": lambda: train.eval_training(0, net, loaders[0], settings),
                 "test pass": lambda: train.eval_training(0, net, loaders[1], settings)}
        times = {}
        for name, part in parts.items():
            start = time.perf_counter()
            part()
            times[name] = time.perf_counter() - start
        return times
    finally:
        os.chdir(here)


def side_by_side(cfg, paths, stats, train, test, clone: Path, width: int, epochs: int) -> None:
    """This project's and the original code's evaluation of one CONV-3-width checkpoint."""
    raw_train, raw_test = load_splits(cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        entry = Entry(3, width, 0)
        train_entry(short_run(cfg, epochs), entry, train, arch_for(3, width, cfg.model, stats),
                    folder, file_digest(paths.train_data), log=lambda _: None)
        model, _ = checkpoints.load(checkpoints.list_epochs(folder)[-1][1])
        write_mnist_files(Path(tmp) / "data", *[(s.x[:, 0].numpy(), s.y.numpy())
                                                 for s in (raw_train, raw_test)])
        timings: dict[str, float] = {}
        evaluate_model(model, stats, cfg, train, test, cfg.train.loss, None, timings)
        theirs = time_original(clone, model, stats["m"], cfg.train.loss, Path(tmp))
    mine = timings["errors"] + timings["bounds"]
    total = sum(theirs.values())
    flops = forward_flops(width) * (len(train) + len(test))
    print(f"\nCONV-3-{width} after {epochs} epochs, m = {stats['m']} + {len(test)} test"
          f" digits, {torch.get_num_threads()} threads, cold (seconds)")
    print("original code: " + ", ".join(f"{k} {v:.2f}" for k, v in theirs.items())
          + f"; total {total:.2f}")
    print(f"this project: error passes {timings['errors']:.2f}, bounds {timings['bounds']:.2f};"
          f" total {mine:.2f}")
    print(f"ratio (original / this project): {total / mine:.2f}")
    passes = theirs["train pass"] + theirs["test pass"]
    print(f"forward passes over both splits: {flops / 1e12:.3f} TFLOP, at"
          f" {flops / timings['errors'] / 1e9:.0f} GFLOP/s here and"
          f" {flops / passes / 1e9:.0f} GFLOP/s in the original's train and test passes")


def widths_table(cfg, paths, stats, train, widths, epochs) -> None:
    cfg = short_run(cfg, epochs)
    digest = file_digest(paths.train_data)
    print(f"\nLipschitz constants per checkpoint, cold, CONV-3-W after 0..{epochs} epochs"
          f" (seconds; lower = dense or Lanczos from the plane-wave start; bounds = both sigmas"
          " and every bound)")
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
                batch = network.batch_size(cfg.bound.eval_batch_size)
                with eval_mode(network.module):
                    patch = data_pass(network, train.x, batch_size=batch).patch_norms
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
    parser.add_argument("--original", type=Path, default=None,
                        help="a clone of https://github.com/lianegalanti/gen: time it side by side")
    parser.add_argument("--original-width", type=int, default=128)
    args = parser.parse_args()
    device = resolve_device(cfg.base.device)
    stats = read_json(paths.stats)
    train = load_split(paths.train_data).to(device)
    test = load_split(paths.test_data).to(device)
    default_entry(cfg, paths, Entry.parse(args.entry), stats, train, test, device)
    if args.original:
        side_by_side(cfg, paths, stats, train, test, args.original, args.original_width,
                     args.epochs)
    if args.widths:
        widths_table(cfg, paths, stats, train, args.widths, args.epochs)


if __name__ == "__main__":
    main()
