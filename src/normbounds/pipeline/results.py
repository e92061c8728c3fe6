"""The results of a pipeline run or a study, loaded for the report wing.

`load_results` stacks every results/<entry>.csv of a run with its depth, width and
seed, checked for every column the figures read; `load_study` stacks every variant of a
study with the columns its figure compares. They read params.yaml and the pipeline's
layout (config.py, paths.py), which the report wing itself never imports.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from normbounds.errors import ArtifactError
from normbounds.pipeline.config import Config, Entry, load_params
from normbounds.pipeline.paths import Paths
from normbounds.report.ranking_claims import SPARSITY
from normbounds.report.reports import SUMMARY_COLUMNS


def load_results(paths: Paths, entries: list[Entry]) -> pd.DataFrame:
    """Every entry's results CSV, with depth, width and seed columns; epochs in order."""
    frames = []
    for entry in entries:
        path = paths.results(entry)
        if not path.is_file():
            raise ArtifactError(f"{path}: missing (run `dvc repro evaluate@{entry.name}`)")
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ArtifactError(f"{path}: not a results table ({type(err).__name__}); run"
                                f" `dvc repro -f evaluate@{entry.name}`") from None
        _check_columns(frame, path, entry)
        # copy: one block per dtype (the text status columns split read_csv's blocks)
        frames.append(frame.copy().assign(depth=entry.depth, width=entry.width, seed=entry.seed))
    return pd.concat(frames, ignore_index=True).sort_values(["depth", "width", "seed", "epoch"])


def _check_columns(frame: pd.DataFrame, path: Path, entry: Entry) -> None:
    """Every column the figures and the summary read is there, numeric and non-empty,
    so the figures stage fails before it writes anything."""
    needed = ["epoch", "fro_l1", "sigma_l1", *SUMMARY_COLUMNS]
    missing = [c for c in dict.fromkeys(needed) if c not in frame.columns]
    bad = [c for c in dict.fromkeys(needed) if c in frame.columns
           and not pd.api.types.is_numeric_dtype(frame[c])]
    if frame.empty or missing or bad:
        what = ("no rows" if frame.empty else f"missing column(s) {missing}" if missing
                else f"non-numeric column(s) {bad}")
        raise ArtifactError(f"{path}: {what}; run `dvc repro -f evaluate@{entry.name}`")


def profile_words(cfg: Config) -> str:
    """The run a finding describes, in words, from its params: data set, epochs, loss."""
    return f"{cfg.data.dataset}, {cfg.train.epochs} epochs, {cfg.train.loss} loss"


def load_study(root: Path, cfg: Config) -> pd.DataFrame:
    """Every variant's results with `variant`, `label_noise`, `family`, `kernel`, `stride`
    and a column per key the variants set to different values (named by the key, e.g.
    `train_size`; the model.* keys together make one, `sparsity`).
    attrs["hyperparameters"]: those keys after the grid's depth and width when they take
    several values (the seeds are repeats, not a hyperparameter);
    attrs["stop_train_error"]: the ranking study's stopping criterion; attrs["thresholds"]:
    every stopping threshold its sensitivity table reads."""
    configs = {v: load_params(Paths(root).params, v) for v in cfg.variants}
    varied = _varied_keys(configs)
    frames = []
    for variant, vcfg in configs.items():
        frame = load_results(Paths(root, variant), vcfg.entries())
        flat = _flat(vcfg) | {SPARSITY: sparsity(vcfg)}
        columns = {"variant": variant, "label_noise": vcfg.data.label_noise,
                   "family": vcfg.model.family, "kernel": vcfg.model.kernel_size,
                   "stride": vcfg.model.stride}
        frames.append(frame.copy().assign(**columns | {key.split(".")[-1]: flat[key]
                                                       for key in varied}))
    out = pd.concat(frames, ignore_index=True)
    grid = [a for a, values in (("depth", cfg.grid.depths), ("width", cfg.grid.widths))
            if len(values) > 1]
    out.attrs["hyperparameters"] = grid + [key.split(".")[-1] for key in varied]
    out.attrs["stop_train_error"] = cfg.ranking.stop_train_error
    out.attrs["thresholds"] = cfg.ranking.stops()
    return out


def sparsity(cfg: Config) -> str:
    """The architecture as one level of the sparsity axis: 'fc' (dense), 'k<k>s<s>' (a
    CONV-L-H with kernel k and stride s) or 'custom'."""
    model = cfg.model
    return f"k{model.kernel_size}s{model.stride}" if model.family == "conv" else model.family


def _flat(cfg: Config) -> dict[str, object]:
    """section.key -> value of a config's sections (lists as tuples, hashable)."""
    return {f"{section}.{key}": tuple(v) if isinstance(v, list) else v
            for section, values in cfg.to_dict().items() if isinstance(values, dict)
            for key, v in values.items()}


def _varied_keys(configs: dict[str, Config]) -> list[str]:
    """The section.key entries whose value differs between the variants, in params order;
    the model.* ones are one entry, `sparsity` (the architecture)."""
    flats = [_flat(c) for c in configs.values()]
    keys = [k for k in flats[0] if len({f[k] for f in flats}) > 1] if flats else []
    model = [k for k in keys if k.startswith("model.")]  # the architecture: one axis
    at = keys.index(model[0]) if model else 0
    rest = [k for k in keys if k not in model]
    return rest[:at] + [SPARSITY] * bool(model) + rest[at:]
