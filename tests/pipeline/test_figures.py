"""Figures and summary on a small synthetic results set."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from normbounds.measure import formulas
from normbounds.pipeline.config import Entry
from normbounds.pipeline.paths import Paths
from normbounds.pipeline.results import load_results
from normbounds.report import legend, plots
from normbounds.report.reports import finding_markdown, summary, summary_markdown

ENTRIES = [Entry(2, w, s) for w in (4, 8) for s in (0, 1)]


def _write_results(paths: Paths) -> None:
    for entry in ENTRIES:
        scale = entry.width * (1 + entry.seed)
        rows = []
        for epoch in (0, 1, 5):
            train_error = 0.0 if epoch == 5 else 0.5 / (epoch + 1)  # an error of 0: hidden
            test_error = 0.1 if epoch == 5 else 0.4 / (epoch + 1)
            row = {"epoch": epoch, "train_error": train_error, "test_error": test_error,
                   "gap": test_error - train_error, "margin_error": 0.2, "ours": 0.5 * scale,
                   "ours_corrected": 2.0 * scale, "golowich_corrected": 400.0 * scale,
                   "certificate": 0.2 + 2.0 * scale, "golowich": 100.0 * scale,
                   "long_sedghi": 3.0 * scale, "graf": 50.0 * scale, "ledent": 1e4 * scale,
                   "certificate_gamma": 1.0, "held_out": 0.15}
            row |= {f"{k}_l{i}": float(i + epoch + 1) for k in ("fro", "sigma")
                    for i in (1, 2, 3)}
            rows.append(row)
        rows[1]["gap"] = -0.05  # a negative gap must not break the log plot
        paths.results(entry).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(paths.results(entry), index=False)


@pytest.fixture
def results(tmp_path):
    paths = Paths(tmp_path)
    _write_results(paths)
    return load_results(paths, ENTRIES)


def test_figure1_has_one_panel_per_entry_and_marks_hidden_points(tmp_path, results):
    fig = plots.figure1(results, tmp_path / "f.png", tmp_path / "f.pdf")
    titles = sorted(ax.get_title() for ax in fig.axes)
    assert titles == ["CONV-2-4", "CONV-2-8"]
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    drawn = fig.legends[0]
    assert [t.get_text() for t in drawn.get_texts()] == [legend.label(k) for k in plots.CURVES]
    assert plots.HIDDEN_NOTE in drawn.get_title().get_text()
    assert "mean over 2 seeds" in drawn.get_title().get_text()
    assert (tmp_path / "f.png").stat().st_size > 0 and (tmp_path / "f.pdf").stat().st_size > 0


def test_the_valid_figure_draws_theorems_solid_and_figure1_dashes_the_rest(tmp_path, results):
    fig = plots.figure_valid(results, tmp_path / "v.png")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [legend.label(k) for k in plots.valid_curves(results)]
    assert labels[:3] == ["Our bound, corrected", "Golowich et al., corrected", "Graf et al. 2022"]
    assert labels[-1] == "Held-out bound (test set)"
    figure1 = plots.figure1(results, tmp_path / "f.png")
    styles = {line.get_label(): line.get_linestyle() for line in figure1.axes[0].lines}
    # the paper's five curves: only graf is a theorem, the others say what they are, dashed
    assert [legend.label(k) for k in formulas.FIGURE1] == [
        "Our bound [printed]", "Golowich et al. 2020 [printed]", "Long & Sedghi 2020 [proxy]",
        "Graf et al. 2022", "Ledent et al. 2021 [fixed-class]"]
    # the statuses a row carries win over the registry's: a reference read from the data
    assert legend.label("graf", {"graf": "conditional"}) == "Graf et al. 2022 [conditional]"
    assert set(legend.LEGEND) >= set(formulas.BOUND_NAMES)  # every bound has its look
    assert styles["Graf et al. 2022"] == "-" and styles["Our bound [printed]"] == "--"
    assert (tmp_path / "v.png").stat().st_size > 0


def test_other_figures(tmp_path, results):
    fig = plots.bounds_vs_width(results, tmp_path / "w.png")
    assert [len(ax.lines) for ax in fig.axes] == [len(formulas.BOUND_NAMES)]
    fig = plots.layer_norms(results, tmp_path / "n.png")
    assert [len(ax.lines) for ax in fig.axes] == [6, 6]  # 3 layers x (Frobenius, sigma)
    assert (tmp_path / "w.png").is_file() and (tmp_path / "n.png").is_file()


def test_summary_matches_the_last_rows(results):
    table = summary(results)
    assert list(zip(table["depth"], table["width"], strict=True)) == [(2, 4), (2, 8)]
    row = table.iloc[1]  # width 8: ours 0.5 * 8 * (1, 2) -> mean 6, half range 2
    assert row["ours"] == pytest.approx(6.0) and row["ours_spread"] == pytest.approx(2.0)
    assert row["test_error"] == pytest.approx(0.1) and row["seeds"] == 2
    assert row["golowich_over_ours_corrected"] == pytest.approx(50.0)
    assert row["ours_over_ours_corrected"] == pytest.approx(0.25)
    assert not row["non_vacuous"]  # certificates 16.2 and 32.2
    markdown = re.sub(" +", " ", summary_markdown(table))  # tabulate pads the columns
    assert "| CONV-2-8 | 2 |" in markdown and "6 ± 2" in markdown
    # one row per bound with its status: ours (printed) at width 4: 0.5 * 4 * (1, 2)
    assert "| ours | printed | 3 ± 1 | 6 ± 2 |" in markdown
    assert "| ours_corrected | theorem | 12 ± 4 | 24 ± 8 |" in markdown
    assert "| ledent | fixed-class | 0.25 | 0.25 |" not in markdown  # ratios: own table
    assert "| ledent | fixed-class | 5e+03 | 5e+03 |" in markdown


def test_the_finding_states_this_runs_numbers(results):
    text = finding_markdown(summary(results), "mnist5k, 3 epochs, mse loss")
    # means over seeds: ours 3 and 6, ours_corrected 12 and 24 (4x), certificates
    # 0.2 + 12 and 0.2 + 24; golowich_corrected / ours_corrected = 200, graf / it = 25
    assert "On this run (mnist5k, 3 epochs, mse loss: CONV-2-4, CONV-2-8) the printed formula" \
        " (`ours`) is 3 to 6;" in text
    assert "(`ours_corrected`) is 12 to 24, 4 times larger, so the certificate" in text
    assert "over the margins of bound.gammas) is 12.2 to 24.2: vacuous, where the test set" \
        " alone bounds the error by 0.15 (the held-out bound)." in text
    assert "corrected form is 200 times ours_corrected and Graf et al.'s 25 times." in text


def test_statuses_the_results_carry_drive_the_legends_the_lines_and_the_summary(tmp_path,
                                                                               results):
    # results evaluated under lipschitz: estimate carry graf and ledent as estimates
    results = results.assign(status_graf="estimate", status_ledent="estimate",
                             status_ours_corrected="theorem")
    fig = plots.figure_valid(results, tmp_path / "v.png")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "Graf et al. 2022" not in labels and labels[:2] == [
        "Our bound, corrected", "Golowich et al., corrected"]
    figure1 = plots.figure1(results, tmp_path / "f.png")
    styles = {line.get_label(): line.get_linestyle() for line in figure1.axes[0].lines}
    assert styles["Graf et al. 2022 [estimate]"] == "--"
    markdown = re.sub(" +", " ", summary_markdown(summary(results)))
    assert "| graf | estimate | 300 ± 1e+02 |" in markdown
    assert "| ledent | estimate |" in markdown and "| ours | printed |" in markdown
    # entries evaluated under different options say so
    mixed = results.assign(status_graf=["theorem", "estimate"] * (len(results) // 2))
    assert formulas.statuses_of(mixed)["graf"] == "mixed: estimate/theorem"


@pytest.mark.parametrize("widths", [(4,), (2, 3, 4, 5, 6)])
def test_figure1_legends_lie_inside_the_canvas_for_one_entry_and_for_five(tmp_path, results,
                                                                            widths):
    one = results[results["width"] == 4].copy()
    frames = [one.assign(width=w) for w in widths]
    for fig in (plots.figure1(pd.concat(frames), tmp_path / "f.png"),
                plots.figure_valid(pd.concat(frames), tmp_path / "v.png")):
        fig.canvas.draw()
        box, canvas = fig.legends[0].get_window_extent(), fig.bbox
        assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1, (box, canvas)
        assert canvas.y0 <= box.y0 and box.y1 <= canvas.y1, (box, canvas)
        panels = min(ax.get_position().y0 for ax in fig.axes) * canvas.height
        assert box.y1 <= panels + 1  # the legend sits under the panels, not over them
