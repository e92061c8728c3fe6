"""The mutation check: break the bound code on purpose, one break at a time, in a copy of
src/, and show that a named test fails on it (docs/bounds.md, "Checks").

Each entry: what the break is, the file, the exact text it replaces (which must occur
once, so a refactor that moves it fails here instead of silently testing nothing), the
broken text, and the test that must catch it. The same tests pass on the real code:
they are part of the suite.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

from pipeline_helpers import subprocess_env

REPO = Path(__file__).resolve().parents[2]
MEMORISER = ("tests/measure/test_validity.py::test_the_printed_bound_certifies_a_random_label"
             "_memoriser_and_the_corrected_does_not[1-False-64-3000-1.0-1.0]")
COUNTEREXAMPLE = ("tests/measure/test_validity.py::test_the_counterexample_is_the_closed_form"
                  "_and_lies_between_printed_and_corrected")
CERTIFICATE = "tests/measure/test_certificate.py::"


class Break(NamedTuple):
    name: str
    file: str  # under src/normbounds/
    old: str
    new: str
    catcher: str  # a pytest node id


BREAKS = [
    Break("K without log n_L^2", "measure/formulas.py",
          "log_count = math.log(num_classes) + math.log(head_positions) + log_preds",
          "log_count = math.log(num_classes) + log_preds", COUNTEREXAMPLE),
    Break("the Frobenius head norm for the block norm", "measure/bounds.py",
          "head_blk, head_rows = block_norm(head.weight, head.pred), ",
          "head_blk, head_rows = frobenius(head.weight), ", MEMORISER),
    Break("2/gamma for 4/gamma", "measure/formulas.py",
          "CORRECT_LIPSCHITZ = 4.0", "CORRECT_LIPSCHITZ = 2.0", MEMORISER),
    Break("rho_c for (rho_c + 1)", "measure/formulas.py",
          "log_first = (math.log(lipschitz) + log_plus(log_rho, 1.0)",
          "log_first = (math.log(lipschitz) + log_rho", MEMORISER),
    Break("graf without its union-bound cost", "measure/prior_bounds.py",
          "cost = sum(grid_cost(k) for k in k_s) + sum(grid_cost(k) for k in k_b)",
          "cost = 0.0", "tests/pipeline/test_bounds.py::test_graf_with_the_harmonic_number"
          "_the_ceilings_and_the_grid_by_hand"),
    Break("pred = 1 for a dense layer after a conv", "measure/network.py",
          "side = layer.in_shape[1] if len(layer.in_shape) == 3 and index > 1 else 1",
          "side = 1", "tests/measure/test_network.py::test_a_dense_layer_after_a_conv_reads"
          "_all_positions"),
    Break("ledent with a dense hidden layer's Frobenius norm", "measure/layers.py",
          "    return block_norm(w.flatten(1), 1)", "    return frobenius(w)",
          "tests/pipeline/test_bounds.py::test_ledent_on_a_dense_network_sums_the_row_norms"
          "_of_hidden_layers"),
    Break("the grid at delta, not delta / K", "measure/certificates.py",
          "theorem, each = bound(CERTIFYING).formula, delta / len(gammas)",
          "theorem, each = bound(CERTIFYING).formula, delta",
          CERTIFICATE + "test_the_certificate_is_the_minimum_over_the_stated_grid_at_delta"
          "_over_k"),
    Break("n_0^2 constants for a dense first layer's bias", "measure/network.py",
          "        constants = side * side",
          "        constants = layer.in_shape[1] ** 2 if len(layer.in_shape) == 3 else 1",
          "tests/measure/test_network.py::test_a_dense_first_layer_with_bias_reads_one"
          "_constant_coordinate"),
    Break("statuses that ignore bound.lipschitz", "measure/formulas.py",
          'b.uses_sigma and lipschitz != "certified"', "b.uses_sigma and False",
          CERTIFICATE + "test_statuses_follow_the_lipschitz_option_and_the_reference"),
    Break("the held-out bound from below", "measure/certificates.py",
          "return min(1.0, high + 1e-12)", "return low",
          CERTIFICATE + "test_the_held_out_bound_is_the_one_sided_clopper_pearson_limit"),
]


@pytest.mark.slow  # a fresh Python per break
@pytest.mark.parametrize("broken", BREAKS, ids=[b.name for b in BREAKS])
def test_each_break_of_a_bound_is_caught_by_its_test(broken, tmp_path):
    source = REPO / "src" / "normbounds" / broken.file
    text = source.read_text()
    assert text.count(broken.old) == 1, f"{broken.file}: the text to break is not there once"
    shutil.copytree(REPO / "src", tmp_path / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (tmp_path / "src" / "normbounds" / broken.file).write_text(
        text.replace(broken.old, broken.new))
    env = subprocess_env(PYTHONPATH=f"{tmp_path / 'src'}")
    # one fresh Python: it checks that it imports the copy, then runs the catching test
    script = ("import sys, normbounds, pytest\n"
              f"assert normbounds.__file__.startswith({str(tmp_path)!r}), normbounds.__file__\n"
              f"sys.exit(pytest.main(['-q', '-x', '-p', 'no:cacheprovider', {broken.catcher!r}]))")
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    tail = (run.stdout + run.stderr)[-2000:]
    assert run.returncode == 1 and " failed" in run.stdout, f"{broken.name}: not caught\n{tail}"
