"""`normbounds bounds MODEL --data DATA`: every bound of docs/bounds.md for any model.

MODEL is a checkpoint of this project, a TorchScript file, or a factory
`package.module:function` with `--weights state_dict.pt`. DATA is a data set of
this project (its prepared training split), an image folder (torchvision's
ImageFolder: one sub-folder per class, or train/ holding them), or a .pt file of
tensors x (N, c, n, n) and y (N,). Images are scaled to [0, 1]; float tensors
are used as they are, so pass the inputs exactly as the model saw them in training.
"""

from __future__ import annotations

import argparse
import inspect
import pickle
import typing
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from normbounds.errors import ArtifactError, ConfigError, InputError
from normbounds.io import load_torch
from normbounds.measure.assessment import assess
from normbounds.measure.network import class_labels, image_shape, read_network
from normbounds.measure.options import BoundConfig
from normbounds.pipeline import checkpoints, cli_output, review
from normbounds.pipeline.config import BaseConfig, DataConfig
from normbounds.pipeline.data import prepare, preprocess
from normbounds.pipeline.datasets import DATASETS, Split, checked_tensors, image_folder
from normbounds.pipeline.models import load_factory
from normbounds.pipeline.runtime import run_stage, setup_torch


def read_data(spec: str, root: str, split: str = "train") -> Split:
    """DATA -> the inputs (float32, as the model reads them) and labels: of a data set
    name, its prepared `split` (train or test); of a folder or a file, all of it."""
    path = Path(spec)
    if spec in DATASETS and not path.exists():
        train, test, _ = prepare(DataConfig(dataset=spec, root=root))
        return train if split == "train" else test
    if path.is_dir():
        split, _ = image_folder(path / "train" if (path / "train").is_dir() else path)
    elif path.is_file():
        blob = load_torch(path)
        if not isinstance(blob, dict) or not {"x", "y"} <= set(blob):
            raise InputError(f"{path}: expected a dict with tensors x (N, c, n, n) and y (N,)")
        _check_file_tensors(path, blob["x"], blob["y"])
        split = checked_tensors(path, blob["x"], blob["y"], "x", "y")
    else:
        raise InputError(f"--data {spec!r}: not a data set name ({', '.join(DATASETS)}), a"
                         " folder or a file")
    return Split(preprocess(split.x, DataConfig()), split.y)


def _check_file_tensors(path: Path, x: object, y: object) -> None:
    """The API's own checks of a data file's x and y, each mistake with its own message."""
    image_shape(x, f"{path}: x")
    if len(x) == 0:
        raise InputError(f"{path}: x: holds no images (shape {tuple(x.shape)})")
    if x.is_floating_point() and not x.isfinite().all():
        raise InputError(f"{path}: x: holds nan or inf; pass finite images")
    class_labels(y, len(x), f"{path}: y")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _refuse_pickled(path: Path, what: str) -> None:
    """A user's file that failed to load, when it holds pickled objects
    (`torch.save(model)`): refused, since unpickling runs code, with what to save instead;
    never advice to delete it. Called on the failure path only: a good file loads once."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(f"{what} {path}: holds pickled Python objects (a torch.save(model)?),"
                         " which are not loaded, since unpickling can run any code; save"
                         " model.state_dict() and pass it with --weights beside MODEL"
                         " package.module:function, or save TorchScript"
                         " (torch.jit.script(model).save(...))") from None
    except Exception:  # not found, truncated: load_torch names these
        return


def read_model(spec: str, weights: str | None, data: Split, depth: int | None,
               width: int | None, untrained: bool = False) -> nn.Module:
    """MODEL -> a module in eval mode (see the module docstring for the three forms)."""
    path = Path(spec)
    if not path.exists() and ":" in spec:
        fn = load_factory(spec, "MODEL")
        if weights is None and not untrained:
            raise InputError(f"MODEL {spec}: a factory without --weights is an untrained"
                             " network; pass --weights state_dict.pt, or --untrained to"
                             " measure the initialisation itself")
        given = {"in_shape": tuple(data.x.shape[1:]), "num_classes": int(data.y.max()) + 1,
                 "depth": depth, "width": width}
        wanted = inspect.signature(fn).parameters
        model = fn(**{k: v for k, v in given.items() if k in wanted})
        if weights is not None:
            try:
                state = load_torch(Path(weights))
            except ArtifactError:  # say so if it is a pickled model, before io's reason
                _refuse_pickled(Path(weights), "--weights")
                raise
            try:
                model.load_state_dict(state.get("model", state) if isinstance(state, dict)
                                      else state)
            except (RuntimeError, TypeError, AttributeError) as err:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise InputError(f"--weights {weights}: does not fit {spec} ({first})") from None
        return model.eval()
    if not path.is_file():
        raise InputError(f"MODEL {spec!r}: no such file, and not a package.module:function")
    if _is_torchscript(path):
        with warnings.catch_warnings():  # torch.jit is deprecated, and still what users save
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    try:
        model, _ = checkpoints.load(path)
    except ArtifactError:  # say so if it is a pickled model, before checkpoints' reason
        _refuse_pickled(path, "MODEL")
        raise
    return model


def _batch(text: str) -> int | str:
    """--batch-size: `auto` or a positive integer."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be auto or a positive integer")
    return int(text)


class _Help(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normbounds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("bounds", help="every bound and ingredient for a model",
                         description=__doc__, formatter_class=_Help)
    cmd.add_argument("model", metavar="MODEL", help="checkpoint, TorchScript file, or"
                     " package.module:function (with --weights)")
    cmd.add_argument("--data", required=True, metavar="DATA",
                     help="data set name, image folder, or .pt file of x and y")
    cmd.add_argument("--root", default="data/raw", help="where torchvision data sets live")
    cmd.add_argument("--weights", help="a state_dict file for a factory MODEL")
    cmd.add_argument("--untrained", action="store_true", help="a factory MODEL without"
                     " --weights: measure its initialisation (refused otherwise)")
    cmd.add_argument("--depth", type=int, help="passed to a factory that takes it")
    cmd.add_argument("--width", type=int, help="passed to a factory that takes it")
    defaults = BoundConfig()
    cmd.add_argument("--test", metavar="DATA", help="held-out data (a data set name: its"
                     " test split): the test error and the held-out bound")
    cmd.add_argument("--gamma", type=float, default=defaults.gamma, help="the margin")
    cmd.add_argument("--gammas", type=float, nargs="+", default=list(defaults.gammas),
                     metavar="G", help="the certificate's margins, fixed in advance")
    cmd.add_argument("--delta", type=float, default=defaults.delta, help="the confidence")
    cmd.add_argument("--lipschitz", default=defaults.lipschitz,
                     choices=typing.get_args(typing.get_type_hints(BoundConfig)["lipschitz"]),
                     help="the sigma_l of graf, ledent and long_sedghi: certified (an upper"
                     " bound), estimate (from below; those bounds become estimates), reshaped")
    cmd.add_argument("--batch-size", type=_batch, default=defaults.eval_batch_size,
                     help="batch of the data passes: auto (sized by the device) or a number")
    cmd.add_argument("--threads", type=int, default=BaseConfig().threads,
                     help="torch's CPU threads")
    cmd.add_argument("--all", action="store_true", help="print every ingredient too, not"
                     " only the errors, the bounds and the certificate")
    cmd.add_argument("--out", help="also write every value, the options, the versions, the"
                     " model's and the data's paths and digests and the time to this .json"
                     " or .csv file")
    rev = sub.add_parser("review", help="what an experiment changed: params and headline"
                         " metrics side by side, within 160 columns", formatter_class=_Help,
                         description=review.__doc__)
    rev.add_argument("--rev", default="HEAD", help="the revision to compare the workspace with")
    rev.add_argument("--entries", nargs="+", metavar="ENTRY",
                     help="only these entries (e.g. 3-8-0); default: all")
    return parser


# the command line's flag of each option it passes on (a bad value names the flag)
FLAGS = {"bound.gamma": "--gamma", "bound.gammas": "--gammas", "bound.delta": "--delta",
         "bound.lipschitz": "--lipschitz", "bound.eval_batch_size": "--batch-size",
         "base.threads": "--threads"}


def _options(args: argparse.Namespace) -> tuple[BoundConfig, BaseConfig]:
    """The bound options and the torch set-up of the flags, checked; a bad value is named
    by its flag, not by the params.yaml key it would have in the pipeline."""
    try:
        params = BoundConfig(gamma=args.gamma, gammas=tuple(args.gammas), delta=args.delta,
                             lipschitz=args.lipschitz, eval_batch_size=args.batch_size)
        params.check()
        base = BaseConfig(device="cpu", threads=args.threads)
        base.check()
    except ConfigError as err:
        key = getattr(err, "key", None)
        if key not in FLAGS:
            raise
        raise InputError(f"{FLAGS[key]} {err.value!r} is invalid: {err.allowed}") from None
    return params, base


def run(argv: list[str] | None = None) -> dict:
    args = _parser().parse_args(argv)
    if args.command == "review":
        text = review.review(args.rev, args.entries)
        print(text, end="")
        return {"review": text}
    if args.out is not None and Path(args.out).suffix not in (".json", ".csv"):
        raise InputError(f"--out {args.out}: must end in .json or .csv")
    params, base = _options(args)
    setup_torch(base)
    data = read_data(args.data, args.root)
    model = read_model(args.model, args.weights, data, args.depth, args.width, args.untrained)
    network = read_network(model, image_shape(data.x, "--data"))
    x = network.inputs(data.x, "--data")  # checked here, so an error names --data
    test = None
    if args.test is not None:
        held = read_data(args.test, args.root, "test")
        test = (network.inputs(held.x, "--test"), held.y)
    row = assess(model, x, data.y, test=test, params=params, network=network)
    print(cli_output.header(row, params), cli_output.table(row, args.all),
          cli_output.footer(row, args.all), sep="\n\n")
    if args.out is not None:
        cli_output.write_row(cli_output.metadata(args, params, data) | row, Path(args.out))
    return row


def main() -> None:
    run_stage(run)
