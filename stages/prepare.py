"""Stage `prepare`: data set -> data/prepared/{train,test}.pt and stats.json (m, C, P, S, X)."""

import normbounds.pipeline  # noqa: F401  first: pins the CPU kernels before torch loads
from normbounds.io import save_torch, write_json
from normbounds.pipeline.data import prepare
from normbounds.pipeline.runtime import run_stage, setup_torch, stage_args, stage_config
from normbounds.pipeline.support import refuse_unreadable


def main() -> None:
    _, paths = stage_args(__doc__, with_entry=False)
    cfg = stage_config(paths)
    setup_torch(cfg.base)  # the statistics are sums: threads and kernels as in training
    train, test, stats = prepare(cfg.data)
    refuse_unreadable(cfg, stats)  # a custom network the bounds cannot read: before training
    save_torch({"x": train.x, "y": train.y}, paths.train_data)
    save_torch({"x": test.x, "y": test.y}, paths.test_data)
    write_json(stats, paths.stats)
    print(f"prepare: {stats['dataset']} m={stats['m']} test={stats['n_test']}"
          f" P={stats['P']:.6g} S={stats['S']:.6g} X={stats['X']:.6g}")


if __name__ == "__main__":
    run_stage(main)
