"""Stage `evaluate@<depth>-<width>-<seed>`: every checkpoint -> errors, every bound of the
registry and the certificate."""

import normbounds.pipeline  # noqa: F401  first: pins the CPU kernels before torch loads
from normbounds.io import read_json
from normbounds.measure.formulas import BOUND_NAMES
from normbounds.pipeline.data import load_split, verify_stats
from normbounds.pipeline.evaluate import evaluate_run, write_results
from normbounds.pipeline.runtime import run_stage, setup_torch, stage_args, stage_config


def main() -> None:
    entry, paths = stage_args(__doc__)
    cfg = stage_config(paths)
    device = setup_torch(cfg.base)
    stats = read_json(paths.stats)
    train = load_split(paths.train_data).to(device)
    verify_stats(stats, train, paths.stats)
    test = load_split(paths.test_data).to(device)
    rows = evaluate_run(cfg, paths.checkpoints(entry), stats, train, test)
    write_results(rows, paths.results(entry), paths.metrics(entry))
    last = rows[-1]
    print(f"evaluate@{entry.name}: epoch {last['epoch']} train {last['train_error']:.4f}"
          f" test {last['test_error']:.4f} certificate {last['certificate']:.4g} "
          + " ".join(f"{name} {last[name]:.4g}" for name in BOUND_NAMES))


if __name__ == "__main__":
    run_stage(main)
