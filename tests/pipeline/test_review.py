"""`normbounds review`: the changed params and the moved headline metrics, within 160 columns."""

from __future__ import annotations

from normbounds.pipeline.review import WIDTH, render

PARAMS = {"params.yaml": {"grid.widths": {"old": [8, 16, 32], "new": [8]},
                          "train.lr": {"old": 0.05, "new": 0.02}}}


def _entry(scale: float, dropped: bool = False) -> dict:
    """A metrics diff of one entry: every headline number moved by `scale`."""
    old = {"train_error": 0.02, "test_error": 0.05, "gap": 0.03, "margin_error": 0.9,
           "ours": 4.9, "ours_corrected": 388.1, "golowich": 81813.6,
           "golowich_corrected": 363547.0, "long_sedghi": 22.6, "graf": 77371.3,
           "ledent": 1542460.0, "certificate": 49.64, "certificate_gamma": 8.0,
           "held_out": 0.0761}
    return {k: {"old": v, "new": None if dropped else v * scale} for k, v in old.items()}


def test_the_review_fits_160_columns_and_shows_what_moved():
    metrics = {"metrics/3-8-0.json": _entry(1.1), "metrics/3-16-0.json": _entry(1.0, True),
               "metrics/3-32-0.json": _entry(1.0, True),
               "logs/3-8-0/metrics.json": {"train_loss": {"old": 0.1, "new": 0.2}}}
    text = render(PARAMS, metrics)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    assert lines[0] == "changed params: grid.widths [8, 16, 32] -> [8]; train.lr 0.05 -> 0.02"
    assert lines[1] == "entries dropped: 3-16-0, 3-32-0"  # one line, not 28 rows
    assert lines[2].split() == ["|", "metric", "|", "3-8-0", "|"]
    assert len(lines) == 3 + 14  # a row per headline metric that moved
    assert "| ours " in text and "4.9 -> 5.39 (+10%)" in text
    assert "train_loss" not in text  # the headline metrics only


def test_an_unchanged_metric_is_left_out_and_many_entries_are_cut_to_the_width():
    moved = {k: v for k, v in _entry(2.0).items() if k == "graf"}
    metrics = {f"metrics/3-{w}-0.json": moved for w in range(1, 12)}
    text = render({"params.yaml": {}}, metrics)
    lines = text.splitlines()
    assert lines[0] == "changed params: none"
    assert [line.split("|")[1].strip() for line in lines[1:3]] == ["metric", "graf"]
    assert max(len(line) for line in lines) <= WIDTH
    assert lines[-1].startswith("(") and lines[-1].endswith("more entries: narrow with"
                                                           " --entries)")
    assert render({"params.yaml": {}}, {}) == "changed params: none\nno headline metric moved\n"
