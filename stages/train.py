"""Stage `train@<depth>-<width>-<seed>`: train one grid entry, checkpoints + loss log."""

from normbounds.config import load_params
from normbounds.data import load_split
from normbounds.io import read_json
from normbounds.models import arch_for
from normbounds.paths import Paths
from normbounds.runtime import entry_from_argv, resolve_device, run_stage
from normbounds.train import file_digest, train_entry, write_history


def main() -> None:
    entry = entry_from_argv(__doc__)
    paths = Paths()
    cfg = load_params(paths.params)
    device = resolve_device(cfg.base.device)
    stats = read_json(paths.stats)
    arch = arch_for(entry.depth, entry.width, cfg.model, stats)
    data = load_split(paths.train_data).to(device)
    history = train_entry(cfg, entry, data, arch, paths.checkpoints(entry),
                          file_digest(paths.train_data))
    write_history(history, paths.train_log(entry), paths.train_metrics(entry))


if __name__ == "__main__":
    run_stage(main)
