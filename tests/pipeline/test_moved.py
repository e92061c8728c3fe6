"""The pipeline/ move retrains nothing: numeric.MOVED names and digests each moved file as
it was before the move, and this proves every entry from the files themselves.

The proof: a file's text with its imports written back as before the move (the module
paths without `pipeline.`, in ruff's order) has the declared digest before the move, so
the file computes what the file before the move computed. train.py's one other change, the
call that reads MOVED, is spelled out below.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

import pytest

from normbounds.pipeline import numeric
from normbounds.pipeline.imports import REPO, relative
from normbounds.pipeline.numeric import MOVED, as_before_the_move
from normbounds.pipeline.train import file_digest

# train.py's change beyond its imports: (the text now, the text before the move)
TRAIN_CHANGES = [
    ('           "code": as_before_the_move({name: file_digest(path)\n'
     '                                       for name, path in code_files(cfg).items()})}\n',
     '           "code": {name: file_digest(path) for name, path in code_files(cfg).items()}}\n'),
    ("from normbounds.numeric import TRAIN_STAGE, as_before_the_move\n",
     "from normbounds.numeric import TRAIN_STAGE\n"),
]


def before_the_move(text: str) -> str:
    """`text` with every first-party import's module path as before the move, each run of
    top-level `normbounds` imports sorted by module as ruff sorts them."""
    out: list[str] = []
    block: list[str] = []
    for line in [*text.split("\n"), None]:
        if line is not None and line.startswith(("from normbounds", "import normbounds")):
            line = line.replace("from normbounds.pipeline import ", "from normbounds import ")
            block.append(line.replace("normbounds.pipeline.", "normbounds."))
            continue
        out += sorted(block, key=lambda statement: statement.split()[1].lower())
        block = []
        if line is not None:
            out.append(line)
    return "\n".join(out)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize("now", sorted(MOVED))
def test_each_moved_file_is_its_text_before_the_move_with_the_new_module_paths(now):
    _, digest_now, digest_before = MOVED[now]
    assert file_digest(REPO / now) == digest_now, (
        f"{now} changed since the move: delete its entry in numeric.MOVED (its runs are"
        " set aside anyway, and it now has its own path and digest in the fingerprint)")
    text = before_the_move((REPO / now).read_text())
    for changed, before in TRAIN_CHANGES if now.endswith("pipeline/train.py") else []:
        assert changed in text
        text = text.replace(changed, before)
    assert _digest(text) == digest_before


def test_the_rewriting_is_the_identity_on_every_file_outside_the_pipeline():
    """The sort key is ruff's: every file whose imports the move left alone (the wings and
    the shared floor, all ruff-sorted) comes back unchanged, byte for byte."""
    files = [p for p in (REPO / "src" / "normbounds").rglob("*.py")
             if "pipeline" not in p.parts and "normbounds.pipeline" not in p.read_text()]
    assert len(files) > 30
    for path in files:
        assert before_the_move(path.read_text()) == path.read_text(), relative(path)


def test_the_moved_files_are_numeric_and_named_as_before():
    moved = {now for now in numeric.NUMERIC if now.startswith(numeric.PIPE)}
    assert set(MOVED) <= moved | {"stages/train.py"}
    assert len(MOVED) == 10  # the move's nine numeric modules and stages/train.py
    assert all(old == now.replace("pipeline/", "") for now, (old, _, _) in MOVED.items())


def test_the_fingerprint_keeps_the_names_digests_and_order_before_the_move():
    code = {"stages/train.py": MOVED["stages/train.py"][1],
            "src/normbounds/io.py": "io",
            **{now: digest for now, (_, digest, _) in MOVED.items() if now.startswith("src/")},
            "mynet.py": "custom"}  # a custom network's module comes last
    got = as_before_the_move(code)
    expected_order = ["stages/train.py",
                      *sorted([old for old, _, _ in MOVED.values() if old.startswith("src/")]
                              + ["src/normbounds/io.py"], key=PurePosixPath),
                      "mynet.py"]
    assert list(got) == expected_order
    assert got["src/normbounds/train.py"] == MOVED[f"{numeric.PIPE}train.py"][2]
    assert got["src/normbounds/io.py"] == "io" and got["mynet.py"] == "custom"


def test_an_edited_moved_file_gets_its_own_path_and_digest():
    code = {f"{numeric.PIPE}models.py": "0123456789abcdef"}  # not the digest the move left
    assert as_before_the_move(code) == code
    same = {f"{numeric.PIPE}models.py": MOVED[f"{numeric.PIPE}models.py"][1]}
    assert as_before_the_move(same) == {"src/normbounds/models.py":
                                        MOVED[f"{numeric.PIPE}models.py"][2]}


def test_the_old_paths_sort_as_the_closure_sorted_them():
    """Before the move the closure was sorted as Paths; PurePosixPath sorts the same."""
    names = ["src/normbounds/models.py", "src/normbounds/measure/geometry.py",
             "src/normbounds/__init__.py", "src/normbounds/io.py"]
    assert (sorted(names, key=PurePosixPath)
            == [relative(p) for p in sorted(REPO / n for n in names)])
    assert sorted(names, key=PurePosixPath)[:2] == ["src/normbounds/__init__.py",
                                                   "src/normbounds/io.py"]
