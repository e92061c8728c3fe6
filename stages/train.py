"""Stage `train@<depth>-<width>-<seed>`: train one grid entry, checkpoints + loss log."""

from normbounds.data import load_split
from normbounds.io import read_json
from normbounds.models import arch_for
from normbounds.runtime import resolve_device, run_stage, stage_args, stage_config
from normbounds.train import file_digest, train_entry, write_history


def main() -> None:
    entry, paths = stage_args(__doc__)
    cfg = stage_config(paths)
    device = resolve_device(cfg.base.device)
    stats = read_json(paths.stats)
    arch = arch_for(entry.depth, entry.width, cfg.model, stats)
    data = load_split(paths.train_data).to(device)
    history = train_entry(cfg, entry, data, arch, paths.checkpoints(entry),
                          file_digest(paths.train_data))
    write_history(history, paths.train_log(entry), paths.train_metrics(entry))


if __name__ == "__main__":
    run_stage(main)
