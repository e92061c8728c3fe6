"""Stage `train@<depth>-<width>-<seed>`: train one grid entry, checkpoints + loss log."""

import normbounds.pipeline  # noqa: F401  first: pins the CPU kernels before torch loads
from normbounds.io import read_json
from normbounds.pipeline.data import load_split
from normbounds.pipeline.models import arch_for
from normbounds.pipeline.runtime import run_stage, setup_torch, stage_args, stage_config
from normbounds.pipeline.train import file_digest, train_entry, write_history


def main() -> None:
    entry, paths = stage_args(__doc__)
    cfg = stage_config(paths)
    device = setup_torch(cfg.base)
    stats = read_json(paths.stats)
    arch = arch_for(entry.depth, entry.width, cfg.model, stats)
    data = load_split(paths.train_data).to(device)
    history = train_entry(cfg, entry, data, arch, paths.checkpoints(entry),
                          file_digest(paths.train_data))
    write_history(history, paths.train_live(entry))


if __name__ == "__main__":
    run_stage(main)
