"""The docs name only paths that exist, and the README's API example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from normbounds.measure.certificates import grid_key, margin_key

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
         REPO / "benchmarks" / "README.md"]
# the top-level entries a docs path may start with; DVC outputs that are not committed
# (data/, checkpoints/) and paths with placeholders are left out
TOP = {p.name for p in REPO.iterdir() if not p.name.startswith(".")} - {"data", "checkpoints"}
PLACEHOLDER = re.compile(r"[<>{}*]|NNNN|\.\.\.")
# git-ignored (the page says how to fetch it), or written by `make gpu-check` on a device
YOURS = {"plots/templates/vendor/", "benchmarks/gpu_check.json", "benchmarks/gpu_check.md"}


def named_paths(page: Path) -> list[str]:
    """Repository paths a page names: in `code` spans and in link targets."""
    text = page.read_text()
    found = re.findall(r"`([^`\s]+)`", text) + re.findall(r"\]\(([^)#\s]+)", text)
    out = []
    for raw in found:
        path = raw.rstrip(".,:;)")
        if path.startswith("http") or PLACEHOLDER.search(path):
            continue
        resolved = (page.parent / path).resolve()
        if path.startswith("../") or (page.parent / path).exists():
            out.append(str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO)
                       else path)
        elif path.split("/")[0] in TOP and ("/" in path or "." in path):
            out.append(path)
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_path_a_page_names_exists(page):
    missing = [p for p in named_paths(page) if not (REPO / p).exists() and p not in YOURS]
    assert not missing, f"{page.relative_to(REPO)} names paths that do not exist: {missing}"


def test_the_path_check_sees_a_missing_path(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See `src/normbounds/nosuch.py` and [the docs](docs/bounds.md).\n")
    assert named_paths(page) == ["src/normbounds/nosuch.py", "docs/bounds.md"]


def test_the_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250


def test_the_readme_api_example_runs():
    text = (REPO / "README.md").read_text()
    block = text.split("## Bounds for your own model")[1].split("```python\n")[1].split("```")[0]
    scope: dict = {}
    exec(compile(block.replace("print(", "(lambda *a: None)("), "README.md", "exec"), scope)
    row, values = scope["row"], scope["values"]
    assert row["certificate"] == min(row[margin_key(g)] + row[grid_key(g)]
                                     for g in (0.5, 1.0, 2.0))
    assert values["ours_corrected"] == pytest.approx(row["ours_corrected"], rel=1e-9)
