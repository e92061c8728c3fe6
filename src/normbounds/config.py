"""params.yaml -> frozen, validated dataclasses.

`load_params` is the only place that opens params.yaml. Every key is checked
(unknown keys, types, ranges) before any stage reads or writes anything, and
the first problem is reported as one `ConfigError` naming the key, the value
and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from normbounds.datasets import DATASETS
from normbounds.errors import ConfigError
from normbounds.limits import check_limits
from normbounds.precision import COMPILE_MODES, PRECISIONS


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"params.yaml: {key} = {value!r} is invalid: {allowed}")


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        _fail(key, value, allowed)


@dataclass(frozen=True)
class BaseConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 2  # torch's intra-op threads, the same on every machine (reproducibility)

    def check(self) -> None:
        _require(self.threads >= 1, "base.threads", self.threads, "must be >= 1")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist5k"  # a name of datasets.DATASETS
    root: str = "data/raw"  # torchvision's folder, the ImageFolder, or the tensors' .pt file
    download: bool = False
    seed: int = 0  # seeds the mnist5k train/test split and the train_size subset
    test_size: int = 1000  # mnist5k, folder, tensors: samples held out for testing
    train_size: int | None = None  # seeded class-stratified subset of the train set
    svhn_extra: int = 0  # svhn only: add the first N images of the `extra` split
    label_noise: float = 0.0  # fraction of train labels replaced by seeded wrong labels
    standardize: bool = False  # per-channel (x - mean) / std after scaling to [0, 1]
    mean: tuple[float, ...] = (0.1307,)
    std: tuple[float, ...] = (0.3081,)

    def check(self) -> None:
        _require(self.dataset in DATASETS, "data.dataset", self.dataset,
                 "must be one of " + ", ".join(DATASETS))
        _require(self.test_size >= 1, "data.test_size", self.test_size, "must be >= 1")
        _require(self.dataset != "mnist5k" or self.test_size < 5000, "data.test_size",
                 self.test_size, "must be < 5000 (mnist5k has 5,000 digits)")
        if self.train_size is not None:
            _require(self.train_size >= 1, "data.train_size", self.train_size,
                     "must be null or an integer >= 1")
        _require(0.0 <= self.label_noise <= 1.0, "data.label_noise", self.label_noise,
                 "must be in [0, 1] (a fraction of the training labels)")
        _require(self.svhn_extra >= 0, "data.svhn_extra", self.svhn_extra, "must be >= 0")
        _require(self.svhn_extra == 0 or self.dataset == "svhn", "data.svhn_extra",
                 self.svhn_extra, "must be 0 unless data.dataset is svhn")
        shape = DATASETS[self.dataset].shape
        if self.standardize and shape is not None:  # other sets: checked once loaded
            channels = shape[0]
            for key, vals in (("data.mean", self.mean), ("data.std", self.std)):
                _require(len(vals) == channels, key, list(vals),
                         f"needs one value per channel ({channels} for {self.dataset})")
        _require(all(s > 0 for s in self.std), "data.std", list(self.std),
                 "every std must be > 0")


@dataclass(frozen=True)
class ModelConfig:
    # fc: dense hidden layers (kernel/stride unused); custom: model.factory builds it
    family: Literal["conv", "fc", "custom"] = "conv"
    kernel_size: int = 2
    stride: int = 1
    weight_norm: bool = True  # one scalar gain per layer, on all layers but the head
    factory: str | None = None  # custom: "package.module:function", imported from the root

    def check(self) -> None:
        custom = self.family == "custom"
        _require(custom == (self.factory is not None), "model.factory", self.factory,
                 "must be set (\"package.module:function\") exactly when model.family is"
                 " custom")
        _require(self.factory is None or bool(_FACTORY.fullmatch(self.factory)),
                 "model.factory", self.factory, "must look like \"package.module:function\"")
        _require(self.kernel_size >= 1, "model.kernel_size", self.kernel_size, "must be >= 1")
        _require(self.stride >= 1, "model.stride", self.stride, "must be >= 1")


_FACTORY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


@dataclass(frozen=True)
class GridConfig:
    depths: tuple[int, ...] = (3,)
    widths: tuple[int, ...] = (8, 16, 32)
    seeds: tuple[int, ...] = (0,)

    def check(self) -> None:
        for name in ("depths", "widths", "seeds"):
            vals = getattr(self, name)
            _require(len(vals) > 0, f"grid.{name}", list(vals), "must list at least one value")
            _require(len(set(vals)) == len(vals), f"grid.{name}", list(vals),
                     "must not repeat a value")
            low = 0 if name == "seeds" else 1
            _require(all(v >= low for v in vals), f"grid.{name}", list(vals),
                     f"every value must be >= {low}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 3e-3
    milestones: tuple[int, ...] = ()
    lr_factor: float = 0.1  # MultiStepLR gamma (renamed: gamma is the margin)
    loss: Literal["mse", "cross_entropy"] = "mse"
    save_every: int = 10
    precision: Literal[tuple(PRECISIONS)] = "fp32"  # precision.py; fp32 is the paper's
    compile: Literal[tuple(COMPILE_MODES)] = "none"  # torch.compile mode (precision.py)

    def check(self) -> None:
        _require(self.epochs >= 1, "train.epochs", self.epochs, "must be >= 1")
        _require(self.batch_size >= 1, "train.batch_size", self.batch_size, "must be >= 1")
        _require(self.lr > 0, "train.lr", self.lr, "must be > 0")
        _require(0 <= self.momentum < 1, "train.momentum", self.momentum, "must be in [0, 1)")
        _require(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "must be >= 0")
        ms = list(self.milestones)
        _require(all(a < b for a, b in zip(ms, ms[1:], strict=False)), "train.milestones", ms,
                 "must be strictly increasing")
        _require(all(v >= 1 for v in ms), "train.milestones", ms, "every epoch must be >= 1")
        _require(0 < self.lr_factor <= 1, "train.lr_factor", self.lr_factor, "must be in (0, 1]")
        _require(self.save_every >= 1, "train.save_every", self.save_every, "must be >= 1")


@dataclass(frozen=True)
class BoundConfig:
    gamma: float = 1.0  # margin
    delta: float = 0.001  # confidence
    # sigma_l the bounds use: certified (upper bound), estimate (converged from below),
    # reshaped (the original study's reshaped-kernel norm); docs/bounds.md
    lipschitz: Literal["certified", "estimate", "reshaped"] = "certified"
    reference: Literal["zero", "init"] = "zero"  # reference weights of Graf and Ledent
    lanczos_tol: float = 1e-9  # relative residual at which Lanczos stops (sigma_lower)
    lanczos_max_steps: int = 5000  # products with A^T A per layer before Lanczos gives up
    # batch of the error and patch-norm passes; auto: sized by the device (runtime.py)
    eval_batch_size: Literal["auto"] | int = "auto"

    def check(self) -> None:
        _require(self.gamma > 0, "bound.gamma", self.gamma, "must be > 0")
        _require(0 < self.delta < 1, "bound.delta", self.delta, "must be in (0, 1)")
        _require(0 < self.lanczos_tol < 1, "bound.lanczos_tol", self.lanczos_tol,
                 "must be in (0, 1)")
        _require(self.lanczos_max_steps >= 1, "bound.lanczos_max_steps",
                 self.lanczos_max_steps, "must be >= 1")
        _require(self.eval_batch_size == "auto" or self.eval_batch_size >= 1,
                 "bound.eval_batch_size", self.eval_batch_size, "must be auto or >= 1")


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
    variants: tuple[str, ...] = ()  # names under `variants:` (studies), not a section

    def entries(self) -> list[Entry]:
        return [Entry(d, w, s) for d in self.grid.depths for w in self.grid.widths
                for s in self.grid.seeds]

    def check(self) -> None:
        for section in dataclasses.fields(self):
            if section.name != "variants":
                getattr(self, section.name).check()
        _check_architecture(self)
        check_limits(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def feature_sides(side: int, depth: int, kernel: int, stride: int) -> list[int]:
    """Spatial sides n_0..n_L of CONV-L feature maps: n_l = floor((n_{l-1} - k)/s) + 1.

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
        sides.append((sides[-1] - kernel) // stride + 1)
    return sides


def _check_architecture(cfg: Config) -> None:
    shape = DATASETS[cfg.data.dataset].shape
    if cfg.model.family != "conv" or shape is None:
        return  # dense layers see the whole input; other shapes are checked once loaded
    side = shape[1]
    for depth in cfg.grid.depths:
        feature_sides(side, depth, cfg.model.kernel_size, cfg.model.stride)


# PyYAML follows YAML 1.1, where `3e-3` (no dot) is a string; DVC writes such
# floats (`dvc exp run -S train.weight_decay=1e-3`), so read them as YAML 1.2 does.
class _Loader(yaml.SafeLoader):
    pass


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict:
    """A mapping whose keys are unique: YAML itself would silently keep the last one."""
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise ConfigError(f"params.yaml: key {key!r} appears twice (line"
                              f" {key_node.start_mark.line + 1}); keep one")
        seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the type hint of its field; return it as the field stores it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        _require(isinstance(value, str) and value in args, key, value,
                 "must be one of " + ", ".join(args))
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 2 and typing.get_origin(inner[0]) is Literal:  # Literal[...] | int
            words = typing.get_args(inner[0])
            _require(value in words or isinstance(value, int) and not isinstance(value, bool),
                     key, value, f"must be {' or '.join(words)} or an integer")
            return value
        return _coerce(value, inner[-1], key)
    if origin is tuple:
        _require(isinstance(value, list), key, value, f"must be a list of {args[0].__name__}")
        return tuple(_coerce(v, args[0], key) for v in value)
    if hint is bool:
        _require(isinstance(value, bool), key, value, "must be true or false")
    elif hint is int:
        _require(isinstance(value, int) and not isinstance(value, bool), key, value,
                 "must be an integer")
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        _require(ok and math.isfinite(value), key, value, "must be a finite number")
        return float(value)
    elif hint is str:
        _require(isinstance(value, str), key, value, "must be a string")
    return value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix or "the top level"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params.yaml: {where} must be a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"params.yaml: unknown key {key!r} in {where}; allowed keys: "
                          + ", ".join(names))
    kwargs = {}
    for name in names:
        if name not in raw:
            continue  # the dataclass default applies
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, raw[name], key)
        else:
            kwargs[name] = _coerce(raw[name], hint, key)
    return cls(**kwargs)


_VARIANT_NAME = re.compile(r"[A-Za-z0-9_.]+")


def _overlay(raw: dict, over: dict) -> dict:
    """params with a variant's sections laid over them key by key."""
    out = dict(raw)
    for section, values in over.items():
        base = out.get(section) or {}
        out[section] = {**base, **values} if isinstance(values, dict) else values
    return out


def _variants(raw: dict) -> dict[str, dict]:
    variants = raw.get("variants") or {}
    if not isinstance(variants, dict):
        raise ConfigError("params.yaml: variants must map a name to section overrides,"
                          f" got {variants!r}")
    for name, over in variants.items():
        _require(isinstance(name, str) and bool(_VARIANT_NAME.fullmatch(name)), "variants",
                 name, "variant names use letters, digits, '_' and '.' only")
        _require(isinstance(over, dict) and all(isinstance(v, dict) for v in over.values()),
                 f"variants.{name}", over, "must map sections to {key: value} overrides")
    return variants


def parse_params(raw: Any, variant: str | None = None) -> Config:
    """Validate an already-parsed params mapping (what params.yaml holds).

    A study's params.yaml may name `variants:`, each a set of section overrides
    (e.g. `k2s2: {model: {stride: 2}}`); every variant is validated here, and
    `variant` selects the one to return.
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        return _build(Config, raw, "")  # raises the "must be a mapping" error
    variants = _variants(raw)
    base = {k: v for k, v in raw.items() if k != "variants"}
    for name, over in variants.items():
        try:
            _build(Config, _overlay(base, over), "").check()
        except ConfigError as err:
            raise ConfigError(f"{err} (in variants.{name})") from None
    if variant is not None and variant not in variants:
        raise ConfigError(f"params.yaml: variant {variant!r} is not defined; variants: "
                          + (", ".join(variants) or "none"))
    cfg = _build(Config, _overlay(base, variants.get(variant, {})), "")
    cfg.check()
    return dataclasses.replace(cfg, variants=tuple(variants))


def load_params(path: str | Path = "params.yaml", variant: str | None = None) -> Config:
    """Read, validate and freeze params.yaml. The one place that opens it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameter file not found (run from the pipeline's folder)")
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty; it must hold the sections base, data,"
                          " model, grid, train, bound (see the repository's params.yaml)")
    cfg = parse_params(raw, variant)
    late = [m for m in cfg.train.milestones if m > cfg.train.epochs]
    if late:
        print(f"warning: {path}: train.milestones {late} lie after train.epochs ="
              f" {cfg.train.epochs}; those learning-rate decays never happen", file=sys.stderr)
    return cfg
