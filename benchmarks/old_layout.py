"""Let the benchmarks run on a checkout from before the pipeline/ package (a revision
`profile_repro.py --against` compares with): there the pipeline's modules are
normbounds.<name>, and this file's callers import normbounds.pipeline.<name>.

`allow()` makes normbounds.pipeline.<name> the very module normbounds.<name> (one
object, not a second copy, so classes and registries stay one), and does nothing where
normbounds.pipeline exists.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

PIPELINE = "normbounds.pipeline"


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name == PIPELINE or name.startswith(PIPELINE + "."):
            return importlib.util.spec_from_loader(name, self, is_package=name == PIPELINE)
        return None

    def create_module(self, spec):
        if spec.name == PIPELINE:  # an empty package: its submodules come through here
            package = types.ModuleType(PIPELINE)
            package.__path__ = []
            return package
        return importlib.import_module("normbounds." + spec.name[len(PIPELINE) + 1:])

    def exec_module(self, module) -> None:
        pass  # the old module ran when it was imported


def allow() -> None:
    """Alias normbounds.pipeline.<name> to normbounds.<name> in an old checkout."""
    if importlib.util.find_spec(PIPELINE) is None:
        sys.meta_path.append(_Alias())
