"""params.yaml -> frozen, validated dataclasses.

`load_params` is the only place that opens params.yaml. Every key is checked
(unknown keys, types, ranges) before any stage reads or writes anything, and
the first problem is reported as one `ConfigError` naming the key, the value
and what is allowed.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from normbounds.constraints import Interval, build, check_fields, param, require
from normbounds.errors import ConfigError
from normbounds.measure.geometry import conv_side
from normbounds.measure.options import BoundConfig
from normbounds.pipeline.datasets import DATASETS
from normbounds.pipeline.losses import LOSSES
from normbounds.pipeline.precision import COMPILE_MODES, PRECISIONS
from normbounds.pipeline.variants import overlay, variant_overrides

SEED_MAX = 2**32 - 1
SEED_WHY = "(NumPy's seeds are 32-bit)"
# 8 GB of float32 weights, before gradients and momentum: far above the paper's 14 M
MAX_WEIGHTS = 2_000_000_000


@dataclass(frozen=True)
class BaseConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch's intra-op threads, the same on every machine (reproducibility)
    threads: int = param(2, Interval(int, 1, top=1_024))

    def check(self) -> None:
        check_fields(self, "base")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist5k"  # a name of datasets.DATASETS
    root: str = "data/raw"  # torchvision's folder, the ImageFolder, or the tensors' .pt file
    download: bool = False
    # seeds the mnist5k train/test split and the train_size subset
    seed: int = param(0, Interval(int, 0, top=SEED_MAX, why=SEED_WHY))
    # mnist5k, folder, tensors: samples held out for testing
    test_size: int = param(1000, Interval(int, 1))
    # seeded class-stratified subset of the train set (null: all of it)
    train_size: int | None = param(None, Interval(int, 1))
    # svhn only: add the first N images of the `extra` split
    svhn_extra: int = param(0, Interval(int, 0))
    # fraction of train labels replaced by seeded wrong labels
    label_noise: float = param(0.0, Interval(float, 0, 1,
                                             why="(a fraction of the training labels)"))
    standardize: bool = False  # per-channel (x - mean) / std after scaling to [0, 1]
    mean: tuple[float, ...] = (0.1307,)
    std: tuple[float, ...] = param((0.3081,), Interval(float, 0, closed="neither"))

    def check(self) -> None:
        require(self.dataset in DATASETS, "data.dataset", self.dataset,
                "must be one of " + ", ".join(DATASETS))
        check_fields(self, "data")
        require(self.dataset != "mnist5k" or self.test_size < 5000, "data.test_size",
                self.test_size, "must be < 5000 (mnist5k has 5,000 digits)")
        require(self.svhn_extra == 0 or self.dataset == "svhn", "data.svhn_extra",
                self.svhn_extra, "must be 0 unless data.dataset is svhn")
        shape = DATASETS[self.dataset].shape
        if self.standardize and shape is not None:  # other sets: checked once loaded
            channels = shape[0]
            for key, vals in (("data.mean", self.mean), ("data.std", self.std)):
                require(len(vals) == channels, key, list(vals),
                        f"needs one value per channel ({channels} for {self.dataset})")


@dataclass(frozen=True)
class ModelConfig:
    # fc: dense hidden layers (kernel/stride unused); custom: model.factory builds it
    family: Literal["conv", "fc", "custom"] = "conv"
    kernel_size: int = param(2, Interval(int, 1))
    stride: int = param(1, Interval(int, 1))
    weight_norm: bool = True  # one scalar gain per layer, on all layers but the head
    factory: str | None = None  # custom: "package.module:function", imported from the root

    def check(self) -> None:
        custom = self.family == "custom"
        require(custom == (self.factory is not None), "model.factory", self.factory,
                "must be set (\"package.module:function\") exactly when model.family is"
                " custom")
        require(self.factory is None or bool(_FACTORY.fullmatch(self.factory)),
                "model.factory", self.factory, "must look like \"package.module:function\"")
        check_fields(self, "model")


_FACTORY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


@dataclass(frozen=True)
class GridConfig:
    depths: tuple[int, ...] = param((3,), Interval(int, 1, top=1_000))
    widths: tuple[int, ...] = param((8, 16, 32), Interval(int, 1, top=1_000_000))
    seeds: tuple[int, ...] = param((0,), Interval(int, 0, top=SEED_MAX, why=SEED_WHY))

    def check(self) -> None:
        for name in ("depths", "widths", "seeds"):
            vals = getattr(self, name)
            require(len(vals) > 0, f"grid.{name}", list(vals), "must list at least one value")
            require(len(set(vals)) == len(vals), f"grid.{name}", list(vals),
                    "must not repeat a value")
        check_fields(self, "grid")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = param(60, Interval(int, 1, top=1_000_000))
    batch_size: int = param(32, Interval(int, 1, top=10_000_000))
    lr: float = param(0.01, Interval(float, 0, closed="neither"))
    momentum: float = param(0.9, Interval(float, 0, 1, closed="left"))
    weight_decay: float = param(3e-3, Interval(float, 0))
    milestones: tuple[int, ...] = param((), Interval(int, 1))
    # MultiStepLR gamma (renamed: gamma is the margin)
    lr_factor: float = param(0.1, Interval(float, 0, 1, closed="right"))
    loss: Literal[tuple(LOSSES)] = "mse"  # losses.py
    save_every: int = param(10, Interval(int, 1, top=1_000_000))
    precision: Literal[tuple(PRECISIONS)] = "fp32"  # precision.py; fp32 is the paper's
    compile: Literal[tuple(COMPILE_MODES)] = "none"  # torch.compile mode (precision.py)

    def check(self) -> None:
        ms = list(self.milestones)
        require(all(a < b for a, b in zip(ms, ms[1:], strict=False)), "train.milestones", ms,
                "must be strictly increasing")
        check_fields(self, "train")


@dataclass(frozen=True)
class RankingConfig:
    """The ranking study's stopping and what its evaluate stage measures (docs/studies.md)."""

    # a run stops at its first saved checkpoint with train error <= this
    stop_train_error: float = param(0.05, Interval(float, 0, 1))
    # the sensitivity table's stopping thresholds (each one's first checkpoint is read)
    thresholds: tuple[float, ...] = param((), Interval(float, 0, 1))
    # all: evaluate every saved checkpoint; stopping: only those the study reads
    evaluate: Literal["all", "stopping"] = "all"
    controls: bool = False  # the PAC-Bayes and sharpness searches (measure/flatness.py)
    controls_subset: int = param(500, Interval(int, 1))  # seeded train samples they use
    controls_seed: int = param(0, Interval(int, 0, top=SEED_MAX, why=SEED_WHY))

    def check(self) -> None:
        check_fields(self, "ranking")

    def stops(self) -> tuple[float, ...]:
        """Every threshold the study reads: the criterion first, then the others."""
        return tuple(dict.fromkeys((self.stop_train_error, *self.thresholds)))


@dataclass(frozen=True)
class Entry:
    """One grid point; its name `<depth>-<width>-<seed>` names stages and files."""

    depth: int
    width: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.depth}-{self.width}-{self.seed}"

    @classmethod
    def parse(cls, text: str) -> Entry:
        match = re.fullmatch(r"(\d+)-(\d+)-(\d+)", text)
        if not match:
            raise ConfigError(f"grid entry {text!r} is invalid: expected <depth>-<width>-<seed>,"
                              " e.g. 3-16-0")
        return cls(*(int(g) for g in match.groups()))


@dataclass(frozen=True)
class Config:
    base: BaseConfig = field(default_factory=BaseConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    bound: BoundConfig = field(default_factory=BoundConfig)
    ranking: RankingConfig = field(default_factory=RankingConfig)  # studies/ranking only
    variants: tuple[str, ...] = ()  # names under `variants:` (studies), not a section

    def entries(self) -> list[Entry]:
        return [Entry(d, w, s) for d in self.grid.depths for w in self.grid.widths
                for s in self.grid.seeds]

    def check(self) -> None:
        for section in dataclasses.fields(self):
            if section.name != "variants":
                getattr(self, section.name).check()
        _check_architecture(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def feature_sides(side: int, depth: int, kernel: int, stride: int) -> list[int]:
    """Spatial sides n_0..n_L of CONV-L feature maps (geometry.conv_side, no padding).

    A layer whose input is smaller than its kernel has no output; such a
    depth is rejected here with the layer named.
    """
    sides = [side]
    for layer in range(1, depth + 1):
        if sides[-1] < kernel:
            raise ConfigError(
                f"params.yaml: depth {depth} is invalid with model.kernel_size = {kernel} and"
                f" model.stride = {stride} on {side}x{side} inputs: layer {layer} would see a"
                f" {sides[-1]}x{sides[-1]} feature map, smaller than its kernel"
            )
        sides.append(conv_side(sides[-1], kernel, stride))
    return sides


def weight_count(cfg: Config, depth: int, width: int) -> int:
    """The number of weights of the grid entry's network (exact for conv and fc; 0 when
    unknown before loading: a custom family, or a data set of unknown shape)."""
    info = DATASETS[cfg.data.dataset]
    if info.shape is None or cfg.model.family == "custom":
        return 0
    (channels, side, _), classes = info.shape, info.classes
    if cfg.model.family == "fc":
        return channels * side * side * width + (depth - 1) * width * width + width * classes
    k = cfg.model.kernel_size
    last = feature_sides(side, depth, k, cfg.model.stride)[-1]
    return (channels * width + (depth - 1) * width * width) * k * k + width * last * last * classes


def _check_architecture(cfg: Config) -> None:
    """Every grid depth fits the input (conv), and no network is too large to hold: its
    size is computed from the architecture before anything is allocated."""
    shape = DATASETS[cfg.data.dataset].shape
    if cfg.model.family == "conv" and shape is not None:  # other shapes: checked once loaded
        for depth in cfg.grid.depths:
            feature_sides(shape[1], depth, cfg.model.kernel_size, cfg.model.stride)
    for depth in cfg.grid.depths:
        for width in cfg.grid.widths:
            count = weight_count(cfg, depth, width)
            require(count <= MAX_WEIGHTS, "grid.widths", list(cfg.grid.widths),
                    f"depth {depth} at width {width} would have {count:.3g} weights (about"
                    f" {16 * count / 1e9:.3g} GB for weights, gradients, momentum and a"
                    f" checkpoint); at most {MAX_WEIGHTS:.3g} weights")


def parse_params(raw: Any, variant: str | None = None) -> Config:
    """Validate an already-parsed params mapping (what params.yaml holds).

    A study's params.yaml may name `variants:`, each a set of section overrides
    (e.g. `k2s2: {model: {stride: 2}}`); every variant is validated here, and
    `variant` selects the one to return.
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        return build(Config, raw, "")  # raises the "must be a mapping" error
    variants = variant_overrides(raw)
    base = {k: v for k, v in raw.items() if k != "variants"}
    for name, over in variants.items():
        try:
            build(Config, overlay(base, over), "").check()
        except ConfigError as err:
            raise ConfigError(f"{err} (in variants.{name})") from None
    if variant is not None and variant not in variants:
        raise ConfigError(f"params.yaml: variant {variant!r} is not defined; variants: "
                          + (", ".join(variants) or "none"))
    cfg = build(Config, overlay(base, variants.get(variant, {})), "")
    cfg.check()
    return dataclasses.replace(cfg, variants=tuple(variants))


def load_params(path: str | Path = "params.yaml", variant: str | None = None, *,
                warn: bool = False) -> Config:
    """Read, validate and freeze params.yaml. The one place that opens it. warn: print the
    warnings about valid but suspicious values (the check stage does, once per change of
    the params; every other stage reads them silently)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameter file not found (run from the pipeline's folder)")
    from normbounds.pipeline.paramfile import read_yaml  # PyYAML: the pipeline's, not the API's

    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; it must hold the sections base, data,"
                          " model, grid, train, bound (see the repository's params.yaml)")
    cfg = parse_params(raw, variant)
    late = [m for m in cfg.train.milestones if m > cfg.train.epochs]
    if late and warn:
        print(f"warning: {path}: train.milestones {late} lie after train.epochs ="
              f" {cfg.train.epochs}; those learning-rate decays never happen", file=sys.stderr)
    return cfg
