"""Stage `train@<depth>-<width>-<seed>`: train one grid entry, checkpoints + loss log."""

import argparse

from normbounds.config import Entry, load_params
from normbounds.data import load_split
from normbounds.io import read_json
from normbounds.models import arch_for
from normbounds.paths import Paths
from normbounds.runtime import resolve_device, run_stage
from normbounds.train import file_digest, train_entry, write_history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("entry", help="grid entry <depth>-<width>-<seed>, e.g. 3-16-0")
    entry = Entry.parse(parser.parse_args().entry)
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
