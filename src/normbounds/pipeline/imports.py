"""Which source files a stage imports, computed from the code: the one source of both a
stage's DVC deps (tests/pipeline/test_architecture.py checks dvc.yaml against it) and a
training run's fingerprint (train.code_files).

The closure follows every `import` of a `normbounds` module, at module level and
inside functions (a lazy import still runs), with the `__init__.py` of every
package on the way (Python runs them first). `normbounds.measure`'s face loads
its names lazily, so code inside the package imports from the defining module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from normbounds.pipeline.numeric import TRAIN_STAGE, is_numeric

PACKAGE = Path(__file__).resolve().parents[1]  # src/normbounds
REPO = PACKAGE.parents[1]  # the checkout: stages/, src/, dvc.yaml


def module_file(name: str) -> Path | None:
    """normbounds.a.b -> src/normbounds/a/b.py or a/b/__init__.py (None: not ours)."""
    parts = name.split(".")
    if parts[0] != "normbounds":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _imported(path: Path) -> set[str]:
    """Every module an import statement of `path` names (`from a import b`: a, and a.b
    when b is a module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names
                      if module_file(f"{node.module}.{a.name}") is not None}
    return {n for n in names if module_file(n) is not None}


def closure(script: Path) -> list[Path]:
    """The files of this package that running `script` imports, sorted."""
    seen: dict[str, Path] = {}
    todo = sorted(_imported(script))
    while todo:
        for name in _with_parents(todo.pop()):
            if name not in seen and (path := module_file(name)) is not None:
                seen[name] = path
                todo.extend(sorted(_imported(path)))
    return sorted(set(seen.values()))


def stage_files(stage: str) -> list[Path]:
    """stages/<stage>.py and every package file it imports: what its DVC deps list."""
    script = REPO / "stages" / f"{stage}.py"
    return [script, *closure(script)]


def code_deps(stage: str) -> list[Path]:
    """A stage's code deps: `stage_files`, less, for the train stage, the files that
    cannot change a trained run (numeric.py), so DVC's deps of the train stage and a run's
    fingerprint are one list."""
    files = stage_files(stage)
    if stage != TRAIN_STAGE:
        return files
    return [path for path in files if is_numeric(relative(path))]


def relative(path: Path) -> str:
    """A file as dvc.yaml and fingerprints name it: relative to the checkout."""
    return path.resolve().relative_to(REPO).as_posix()


def _code_dep(item: str) -> bool:
    return item.endswith(".py") and ("stages/" in item or "src/normbounds/" in item)


def synced_pipeline(text: str, prefix: str = "") -> str:
    """dvc.yaml's text with every stage's code deps replaced by `code_deps` of the
    script its `cmd` runs (first in `deps:`, in order); other deps are kept. prefix: the
    path from the pipeline's folder to the checkout ("../../" for the studies)."""
    out, script, in_deps = [], None, False
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("    cmd:"):
            found = re.search(r"stages/(\w+)\.py", line)
            script = found.group(1) if found else None
        if in_deps and stripped.startswith("- ") and _code_dep(stripped[2:]):
            continue  # a code dep: the computed list replaces it
        in_deps = line == "    deps:" or (in_deps and line.startswith("      "))
        out.append(line)
        if line == "    deps:" and script is not None:
            out += [f"      - {prefix}{relative(p)}" for p in code_deps(script)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":  # python -m normbounds.pipeline.imports: rewrite the code deps in place
    for pipeline, prefix in ((REPO / "dvc.yaml", ""),
                             (REPO / "studies" / "study.dvc.yaml", "../../")):
        pipeline.write_text(synced_pipeline(pipeline.read_text(), prefix))
        print(f"{relative(pipeline)}: code deps computed from the imports")
