"""The paper's bound (as printed and corrected), the prior bounds, and the BOUNDS registry.

Each bound is one function of scalar ingredients, exactly as docs/bounds.md
states it; `BOUNDS` lists them once with their `status`, and everything else
(evaluation, metrics, reports, figures, studies, the CLI, the DVC plot template,
tests) reads that list. How a figure names and colours them is presentation: the
report wing's table (report/legend.py). The status says what a number is
(docs/bounds.md, "Validity"):

- theorem: holds with probability >= 1 - delta for the trained network itself;
- printed: the formula exactly as its paper prints it; the theorem behind it is
  false, so it is NOT a bound (kept to reproduce the paper's Figure 1);
- fixed-class: a theorem for norm constraints fixed before seeing the data,
  evaluated at the trained network's own values (no union bound over them);
- proxy: not a bound (an unknown constant set to 1);
- estimate: a theorem's formula evaluated with a Lipschitz constant that may lie below
  the true one (bound.lipschitz estimate or reshaped), so not a bound;
- conditional: a theorem only if the reference weights M_l were chosen independently of
  the training data, which the caller did not declare.

`statuses` gives each bound's status under a configuration; the row of
`bounds.compute` carries it as `status_<name>`, and every consumer reads it there.

Notation: L hidden layers, D = L + 1 weight layers (the head is layer D), m
training samples, C classes, gamma the margin, delta the confidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from normbounds.measure.logspace import LOG2, exp, log_plus, scale_term
from normbounds.measure.prior_bounds import graf, ledent, long_sedghi

# each status in one line: the CLI's footer, and what every legend suffix means
STATUS_MEANINGS: dict[str, str] = {
    "theorem": "holds with probability >= 1 - delta for this network, as computed",
    "printed": "the paper's formula as printed; its theorem is false, so NOT a bound",
    "fixed-class": "a theorem for constraints fixed in advance, evaluated at this network's"
                   " own values",
    "proxy": "NOT a bound: an unknown constant set to 1",
    "estimate": "a theorem's formula with a Lipschitz constant estimated from below: NOT a"
                " bound",
    "conditional": "a theorem only if the reference weights were chosen without the"
                   " training data",
}
STATUSES: tuple[str, ...] = tuple(STATUS_MEANINGS)


def complexity_factor(depth_d: int, log_count: float) -> float:
    """1 + sqrt(2 (D log 2 + log count)): the peeling's factor, count the number of terms
    of its union (paths, classes)."""
    return 1.0 + math.sqrt(2.0 * (depth_d * LOG2 + log_count))


def log_rademacher(log_rho: float, depth_d: int, log_count: float, log_width: float,
                   m: int) -> float:
    """log of rho (1 + sqrt(2 (D log 2 + log count))) sqrt(width) / m, the peeling bound on
    (1/m) E sup sum_{i,r} xi_{ir} f_r(x_i) over the class of norm product <= rho (Prop 3.1's
    form): width = prod_l pred_l * P (ours) or S^2 (golowich), each passed as a log."""
    return (log_rho + math.log(complexity_factor(depth_d, log_count)) + 0.5 * log_width
            - math.log(m))


def margin_bound(log_rademacher_at_1: float, log_rho: float, lipschitz: float, gamma: float,
                 m: int, delta: float) -> float:
    """lipschitz (rho + 1) / gamma * R_1 + 3 sqrt(log(2 (rho + 2)^2 / delta) / (2 m)), R_1 the
    Rademacher bound at rho = 1: the margin bound on err_P - err_S^gamma, with the union
    over the integer scales t >= rho of the class."""
    log_first = (math.log(lipschitz) + log_plus(log_rho, 1.0) - math.log(gamma)
                 + log_rademacher_at_1)
    return exp(log_first) + scale_term(log_rho, m, delta)


PRINTED_LIPSCHITZ = 2.0 * math.sqrt(2.0)  # Lemma 2.2 as printed
CORRECT_LIPSCHITZ = 4.0  # ramp 1/gamma, margin operator sqrt 2, vector contraction sqrt 2, 2 R


def log_prop31(log_rho: float, depth_d: int, degs: Sequence[int], preds: Sequence[int],
               num_classes: int, P: float, m: int) -> float:
    """log of Prop 3.1 AS PRINTED: rho (1 + sqrt(2 (D log 2 + sum_l log deg_l + log C)))
    * sqrt(prod_l pred_l * P) / m, claimed to bound (1/m) E sup sum_{i,r} xi_ir f_r(x_i) over
    the networks with prod_l ||W_l||_F <= rho. False (docs/bounds.md, "Validity")."""
    log_count = sum(math.log(d) for d in degs) + math.log(num_classes)
    log_width = sum(math.log(p) for p in preds) + math.log(P)
    return log_rademacher(log_rho, depth_d, log_count, log_width, m)


def log_prop31_corrected(log_rho_c: float, depth_d: int, preds: Sequence[int],
                         head_positions: int, num_classes: int, P: float, m: int) -> float:
    """log of the corrected Prop 3.1: rho_c (1 + sqrt(2 (D log 2 + K))) sqrt(prod_l pred_l P)
    / m with K = log C + log(n_L^2) + sum_l log pred_l, a bound on (1/m) E sup sum_{i,r}
    xi_ir f_r(x_i) over the networks with ||W_D||_blk prod_{l<D} ||W_l||_F <= rho_c."""
    log_preds = sum(math.log(p) for p in preds)
    log_count = math.log(num_classes) + math.log(head_positions) + log_preds
    return log_rademacher(log_rho_c, depth_d, log_count, log_preds + math.log(P), m)


def ours(log_rho: float, depth_d: int, degs: Sequence[int], preds: Sequence[int],
         num_classes: int, P: float, m: int, gamma: float, delta: float) -> float:
    """Galanti, Xu, Galanti, Poggio (NeurIPS 2023), Theorem 3.2 AS PRINTED (status printed):

        2 sqrt(2) (rho + 1) / (gamma m) * (1 + sqrt(2 (D log 2 + sum_l log deg_l + log C)))
          * sqrt(prod_l pred_l * P) + 3 sqrt(log(2 (rho + 2)^2 / delta) / (2 m))

    rho = prod of the D layers' Frobenius norms (passed as log rho); degs and preds run
    over the L hidden layers (deg_l = pred_l, the in-degree).
    """
    r_1 = log_prop31(0.0, depth_d, degs, preds, num_classes, P, m)
    return margin_bound(r_1, log_rho, PRINTED_LIPSCHITZ, gamma, m, delta)


def ours_corrected(log_rho_c: float, depth_d: int, preds: Sequence[int], head_positions: int,
                   num_classes: int, P: float, m: int, gamma: float, delta: float) -> float:
    """The corrected Theorem 3.2 (status theorem; proof in docs/bounds.md):

        rho_c = ||W_D||_blk * prod_l ||W_l||_F,  ||W_D||_blk = sum_{r, j} ||W_D[r, :, j]||_2
        K = log C + log(n_L^2) + sum_l log pred_l    (the number of peeling paths)
        4 (rho_c + 1) / (gamma m) * (1 + sqrt(2 (D log 2 + K))) * sqrt(prod_l pred_l * P)
          + 3 sqrt(log(2 (rho_c + 2)^2 / delta) / (2 m))

    head_positions = n_L^2, the positions the head reads (1 after a dense layer).
    """
    r_1 = log_prop31_corrected(0.0, depth_d, preds, head_positions, num_classes, P, m)
    return margin_bound(r_1, log_rho_c, CORRECT_LIPSCHITZ, gamma, m, delta)


def golowich(log_rho_g: float, depth_d: int, num_classes: int, S: float, m: int,
             gamma: float, delta: float) -> float:
    """The paper's multi-class form of Golowich, Rakhlin, Shamir (2018), Theorem 1, AS
    PRINTED (status printed: it takes the same Frobenius-head step):

        2 sqrt(2) (rho_G + 1) / (gamma m) * (1 + sqrt(2 (D log 2 + log C))) * S
          + 3 sqrt(log(2 (rho_G + 2)^2 / delta) / (2 m))

    rho_G = prod_l ||T_l||_F * ||W_D||_F, T_l the full (Toeplitz) map of layer l.
    """
    r_1 = log_rademacher(0.0, depth_d, math.log(num_classes), 2.0 * math.log(S), m)
    return margin_bound(r_1, log_rho_g, PRINTED_LIPSCHITZ, gamma, m, delta)


def golowich_corrected(log_rho_gc: float, depth_d: int, num_classes: int, S: float, m: int,
                       gamma: float, delta: float) -> float:
    """Golowich et al. corrected for C classes (status theorem): the head in the sum of its
    row norms, rho_Gc = (sum_r ||W_D[r]||_2) prod_l ||T_l||_F, and 4 / gamma:

        4 (rho_Gc + 1) / (gamma m) * (1 + sqrt(2 (D log 2 + log C))) * S
          + 3 sqrt(log(2 (rho_Gc + 2)^2 / delta) / (2 m))
    """
    r_1 = log_rademacher(0.0, depth_d, math.log(num_classes), 2.0 * math.log(S), m)
    return margin_bound(r_1, log_rho_gc, CORRECT_LIPSCHITZ, gamma, m, delta)


@dataclass(frozen=True)
class Ingredients:
    """Everything the bounds read, extracted from a network by `bounds.compute`.
    Per-layer sequences run over the D weight layers unless said otherwise."""

    log_rho: float  # log prod_l ||W_l||_F
    log_rho_c: float  # log ||W_D||_blk prod_{l<D} ||W_l||_F
    log_rho_g: float  # log of Golowich's product of Toeplitz Frobenius norms
    log_rho_gc: float  # the same with the head's sum of row norms
    depth_d: int
    degs: Sequence[int]  # per hidden layer (L of them)
    preds: Sequence[int]  # per hidden layer (L of them)
    head_positions: int  # n_L^2
    num_classes: int
    P: float
    S: float
    m: int
    gamma: float
    delta: float
    sigmas: Sequence[float]  # the Lipschitz constants bound.lipschitz chose
    n_params: int
    n_max: int
    l21s: Sequence[float]  # ||W_l - M_l||_{2,1}
    a: Sequence[float]  # Ledent's a_l
    b: Sequence[float]  # Ledent's b_l (largest input-patch norms)
    sides_in: Sequence[int]
    positions: Sequence[int]
    out_channels: Sequence[int]


@dataclass(frozen=True)
class Bound:
    """One bound: its results column, status and formula (its figure label and colour are
    the report wing's: report/legend.py)."""

    name: str
    status: str  # one of STATUSES
    formula: Callable[[Ingredients], float]
    figure1: bool = False  # one of the five curves of the paper's Figure 1
    uses_sigma: bool = False  # its theorem needs an upper bound on every sigma_l
    uses_reference: bool = False  # it reads the reference weights M_l


BOUNDS: tuple[Bound, ...] = (
    Bound("ours", "printed", lambda q: ours(
        q.log_rho, q.depth_d, q.degs, q.preds, q.num_classes, q.P, q.m, q.gamma, q.delta),
        figure1=True),
    Bound("ours_corrected", "theorem", lambda q:
          ours_corrected(q.log_rho_c, q.depth_d, q.preds, q.head_positions, q.num_classes,
                         q.P, q.m, q.gamma, q.delta)),
    Bound("golowich", "printed", lambda q: golowich(
        q.log_rho_g, q.depth_d, q.num_classes, q.S, q.m, q.gamma, q.delta), figure1=True),
    Bound("golowich_corrected", "theorem", lambda q:
          golowich_corrected(q.log_rho_gc, q.depth_d, q.num_classes, q.S, q.m, q.gamma,
                             q.delta)),
    Bound("long_sedghi", "proxy", lambda q: long_sedghi(
        q.sigmas, q.n_params, q.m, q.delta), figure1=True, uses_sigma=True),
    Bound("graf", "theorem", lambda q: graf(
        q.sigmas, q.l21s, q.S, q.m, q.n_max, q.gamma, q.delta), figure1=True, uses_sigma=True,
        uses_reference=True),
    Bound("ledent", "fixed-class", lambda q: ledent(
        q.sigmas, q.a, q.b, q.sides_in, q.positions, q.out_channels, q.m, q.gamma, q.delta),
        figure1=True, uses_sigma=True, uses_reference=True),
)
BOUND_NAMES: tuple[str, ...] = tuple(b.name for b in BOUNDS)
THEOREMS: tuple[str, ...] = tuple(b.name for b in BOUNDS if b.status == "theorem")
FIGURE1: tuple[str, ...] = tuple(b.name for b in BOUNDS if b.figure1)
CERTIFYING = "ours_corrected"  # the certificate: margin error + this theorem
HELD_OUT = "held_out"  # the test-set bound beside it (certificates.held_out_bound)
HELD_OUT_STATUS = "theorem (held-out)"
STATUS_MEANINGS[HELD_OUT_STATUS] = ("holds with probability >= 1 - delta: the test points were"
                                    " never seen in training")

# The DVC metrics of an entry: what review reads. Per-layer ingredients, the margin
# grid and solver counters stay in the results CSVs.
HEADLINE: tuple[str, ...] = ("train_error", "test_error", "gap", "margin_error",
                             *BOUND_NAMES, "certificate", "certificate_gamma", HELD_OUT)


def statuses(lipschitz: str = "certified", reference_independent: bool = True
             ) -> dict[str, str]:
    """Each bound's status under a configuration (docs/bounds.md, "Validity"): a theorem or
    fixed-class bound that needs an upper bound on sigma_l is an `estimate` unless
    bound.lipschitz is `certified`; a theorem that reads reference weights M_l is
    `conditional` unless they are independent of the training data."""
    out = {}
    for b in BOUNDS:
        value = b.status
        if value in ("theorem", "fixed-class") and b.uses_sigma and lipschitz != "certified":
            value = "estimate"
        elif value == "theorem" and b.uses_reference and not reference_independent:
            value = "conditional"
        out[b.name] = value
    return out


def bound(name: str) -> Bound:
    """The registry entry of a bound."""
    return {b.name: b for b in BOUNDS}[name]


def status(name: str, given: Mapping[str, str] | None = None) -> str:
    """A bound's status: from `given` (a row's statuses, `statuses_of`), else the registry's;
    the held-out bound's; '' for a measured quantity."""
    if name in BOUND_NAMES:
        return (given or {}).get(name, bound(name).status)
    return HELD_OUT_STATUS if name == HELD_OUT else ""


def status_column(name: str) -> str:
    """The row's column holding a bound's status."""
    return f"status_{name}"


def statuses_of(rows: object) -> dict[str, str]:
    """The statuses a table of rows carries (a DataFrame or a dict with status_<name>); a
    bound whose rows disagree (entries under different configs) is 'mixed: a/b'."""
    out = {}
    for name in BOUND_NAMES:
        column = status_column(name)
        if column not in rows:
            continue
        found = rows[column]
        values = sorted({found} if isinstance(found, str) else set(found.dropna()))
        if values:
            out[name] = values[0] if len(values) == 1 else "mixed: " + "/".join(values)
    return out
