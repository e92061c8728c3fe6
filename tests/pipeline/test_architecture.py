"""The layers and the code deps: stages -> pipeline -> measure, computed from the imports."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from normbounds.pipeline import imports, train
from normbounds.pipeline.imports import REPO, code_deps, relative, stage_files

PIPELINES = {REPO / "dvc.yaml": "", REPO / "studies" / "study.dvc.yaml": "../../"}
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(env_path: Path | None = None) -> subprocess.CompletedProcess:
    env = None if env_path is None else {"PYTHONPATH": str(env_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run([LINT, "--config", str(REPO / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd=REPO, env=env)


@pytest.mark.slow  # fresh Pythons (make test-fast runs lint-imports itself)
def test_the_import_contracts_hold():
    run = _lint()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Contracts: 4 kept, 0 broken." in run.stdout


@pytest.mark.slow  # fresh Pythons (make test-fast runs lint-imports itself)
@pytest.mark.parametrize(("module", "line", "broken"), [
    # a wing reaching into the pipeline
    ("measure/layers.py", "import normbounds.pipeline.config", "import nothing of the pipeline"),
    ("report/legend.py", "import normbounds.pipeline.paths", "import nothing of the pipeline"),
    ("errors.py", "import normbounds.measure.formulas", "no arrow points up"),  # floor -> wing
    ("pipeline/config.py", "import normbounds.pipeline.runtime", "no import cycles"),
])
def test_a_wrong_import_breaks_a_contract(tmp_path, module, line, broken):
    shutil.copytree(REPO / "src" / "normbounds", tmp_path / "normbounds")
    target = tmp_path / "normbounds" / module
    target.write_text(target.read_text() + f"\n{line}  # the deliberate mistake\n")
    run = _lint(tmp_path)
    assert run.returncode == 1, run.stdout
    assert any(broken in row and row.rstrip().endswith("BROKEN")
               for row in run.stdout.splitlines()), run.stdout


def _stages(pipeline: Path) -> dict[str, tuple[str, list[str]]]:
    """stage -> (its script, the code deps dvc.yaml lists for it)."""
    out = {}
    for name, stage in yaml.safe_load(pipeline.read_text())["stages"].items():
        script = stage["cmd"].split("stages/")[1].split(".py")[0]
        out[name] = (script, [d for d in stage["deps"] if imports._code_dep(d)])
    return out


@pytest.mark.parametrize("pipeline", PIPELINES, ids=lambda p: relative(p))
def test_every_stage_depends_on_exactly_the_code_it_imports(pipeline):
    """Every stage lists the files it imports; the train stage only those numeric.py
    declares able to change a trained run (the fingerprint's list)."""
    prefix = PIPELINES[pipeline]
    for name, (script, listed) in _stages(pipeline).items():
        wanted = [prefix + relative(p) for p in code_deps(script)]
        missing, extra = sorted(set(wanted) - set(listed)), sorted(set(listed) - set(wanted))
        assert not missing and not extra, (
            f"{relative(pipeline)} stage {name}: missing {missing}, not imported {extra};"
            " run `python -m normbounds.pipeline.imports`")
    assert imports.synced_pipeline(pipeline.read_text(), prefix) == pipeline.read_text()


@pytest.mark.slow  # fresh Pythons (make test-fast runs lint-imports itself)
@pytest.mark.parametrize("stage", ["check", "prepare", "train", "evaluate", "figures", "study"])
def test_the_computed_closure_holds_every_module_the_stage_loads(stage):
    """Importing the stage script (not running it) loads no package file the closure
    misses; the closure may hold more (imports inside functions)."""
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('s',"
            f" {str(REPO / 'stages' / f'{stage}.py')!r}); spec.loader.exec_module("
            "importlib.util.module_from_spec(spec)); print('\\n'.join(m.__file__ for m in"
            " list(sys.modules.values()) if m.__name__.startswith('normbounds')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert {Path(f).resolve() for f in loaded} <= set(stage_files(stage))


def test_training_digests_its_numeric_imports_and_no_bound_code(tiny_cfg):
    names = set(train.code_files(tiny_cfg))
    assert {"stages/train.py", *(f"src/normbounds/pipeline/{m}.py" for m in
                                 ("train", "precision", "runtime", "models"))} <= names
    assert not {"src/normbounds/measure/formulas.py", "src/normbounds/measure/bounds.py",
                "src/normbounds/measure/network.py", "src/normbounds/errors.py",
                "src/normbounds/progress.py"} & names
    assert names == {relative(p) for p in code_deps("train")}
    assert names < {relative(p) for p in stage_files("train")}


@pytest.mark.slow  # fresh Pythons (make test-fast runs lint-imports itself)
def test_the_api_and_cli_load_no_pipeline_dependency():
    code = ("import sys, normbounds.measure as m, normbounds.pipeline.cli; m.compute; m.assess;"
            " m.read_network; print(' '.join(sorted({n.split('.')[0] for n in sys.modules})))")
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert "torch" in loaded and "normbounds" in loaded
    assert not {"dvc", "pandas", "matplotlib", "mlxtend", "dvclive", "tabulate"} & loaded


def test_the_face_names_stay_functions_after_every_submodule_is_imported():
    """A submodule named like a face name would replace it on the package once imported
    (`measure.assess` the module instead of the function): none is."""
    import importlib
    import pkgutil

    import normbounds.measure as measure

    for info in pkgutil.iter_modules(measure.__path__):
        importlib.import_module(f"normbounds.measure.{info.name}")
    for name in measure.__all__:
        home = importlib.import_module(f"normbounds.measure.{measure._FACE[name]}")
        assert getattr(measure, name) is getattr(home, name), name
