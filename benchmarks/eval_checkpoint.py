"""Per-checkpoint evaluation cost vs one training epoch, on the widest default entry.

Run by hand after `dvc repro` (needs the entry's checkpoints):
    python benchmarks/eval_checkpoint.py [--entry 3-32-0]
Prints the time split (error passes vs bounds) per checkpoint, averaged over
all checkpoints of the run (power iteration warm-started as in the stage),
and its ratio to one training epoch measured in the same process.
"""

import argparse
import time

import torch

from normbounds import checkpoints
from normbounds.config import Entry, load_params
from normbounds.data import load_split
from normbounds.evaluate import evaluate_run
from normbounds.io import read_json
from normbounds.paths import Paths
from normbounds.runtime import resolve_device
from normbounds.train import loss_fn, run_epoch


def main() -> None:
    paths = Paths()
    cfg = load_params(paths.params)
    widest = Entry(cfg.grid.depths[0], max(cfg.grid.widths), cfg.grid.seeds[0])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entry", default=widest.name)
    entry = Entry.parse(parser.parse_args().entry)
    device = resolve_device(cfg.base.device)
    stats = read_json(paths.stats)
    train = load_split(paths.train_data).to(device)
    test = load_split(paths.test_data).to(device)

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

    errors, bounds = timings["errors"] / n, timings["bounds"] / n
    print(f"entry {entry.name} on {device}, {n} checkpoints, m = {stats['m']}")
    print(f"per checkpoint: error passes {errors:.3f} s, bounds {bounds:.3f} s,"
          f" total {errors + bounds:.3f} s")
    print(f"one training epoch: {epoch_s:.3f} s")
    print(f"ratio (checkpoint evaluation / training epoch): {(errors + bounds) / epoch_s:.2f}")


if __name__ == "__main__":
    main()
