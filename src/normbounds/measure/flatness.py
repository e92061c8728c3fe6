"""The positive controls of the ranking study: PAC-Bayes flatness and worst-case sharpness.

Jiang et al. (ICLR 2020, Appendix C) found these predict generalization best; they are
measured by search, not read from the weights. Both searches bisect one radius on
[0, upper] until the train accuracy drops by `target` (within `tolerance`):

- `sigma_search`: the largest Gaussian perturbation, of standard deviation sigma (plain)
  or sqrt(sigma^2 w_i^2 + eps^2) (magnitude-aware), whose mean accuracy over
  `mc_samples` draws is `target` below the network's. The public code
  (nitarshan/robust-generalization-measures, data/generation/measures.py) passes the
  variance expression to torch.normal as its std; here it is the standard deviation.
- `alpha_search`: the magnitude-aware box |u_i| <= alpha' |w_i| + eps, searched by
  `restarts` seeded projected ascents of the cross-entropy (steps of sign(grad) scaled to
  the box, then clipped into it); the drop is the worst restart's.

Everything runs on a plain copy of the model whose weights are its effective weights
(a weight-normed layer's g v / ||v||): the perturbation acts on the function's weights,
the ones measures.py and the bounds read. Every draw comes from a generator seeded by
`seed` (the same draws at every radius: common random numbers), so reruns give the same
bytes. docs/studies.md, "Positive controls", gives the formulas and the choices.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize


@dataclass(frozen=True)
class SearchConfig:
    """The searches' constants (Jiang et al.'s, as the spec of the study fixes them)."""

    target: float = 0.1  # the accuracy drop searched for
    tolerance: float = 0.01  # |drop - target| < tolerance ends the search
    upper: float = 2.0  # the bisection's interval is [0, upper]
    steps: int = 15  # bisection steps at most
    mc_samples: int = 10  # Gaussian draws per sigma
    restarts: int = 3  # ascents per alpha
    ascent_steps: int = 10  # ascent steps per restart
    ascent_batch: int = 128  # training samples per ascent step (seeded)
    eps: float = 1e-3  # the magnitude-aware floor
    seed: int = 0
    eval_batch: int = 250  # batch of the accuracy passes (no value depends on it)


SEARCH = SearchConfig()  # the constants as the study uses them


@dataclass(frozen=True)
class Search:
    value: float  # the last radius tried
    drop: float  # the accuracy drop measured there
    converged: bool  # |drop - target| < tolerance
    steps: int


def plain_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode whose parameters are its effective weights (every
    parametrization, weight norm included, folded in)."""
    out = copy.deepcopy(model).eval()
    for module in list(out.modules()):
        if parametrize.is_parametrized(module):
            # removal deletes the property from the module's class, which a deep copy
            # shares with `model`: the copy gets a class of its own first
            cls = type(module)
            module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
            for name in list(module.parametrizations):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    """The fraction of x that `model` classifies as y (argmax; ties count as errors only
    when the first maximum is not y, as torch.argmax breaks them)."""
    right = sum(int((model(x[s:s + batch]).argmax(1) == y[s:s + batch]).sum())
                for s in range(0, len(x), batch))
    return right / len(x)


def bisect(drop: Callable[[float], float], cfg: SearchConfig) -> Search:
    """Bisect the radius r on [0, upper] until |drop(r) - target| < tolerance: a drop over
    the target lowers the upper end, one under it raises the lower end."""
    lower, upper = 0.0, cfg.upper
    r = d = math.nan
    for step in range(1, cfg.steps + 1):
        r = (lower + upper) / 2
        d = drop(r)
        if abs(d - cfg.target) < cfg.tolerance:
            return Search(r, d, True, step)
        lower, upper = (lower, r) if d > cfg.target else (r, upper)
    return Search(r, d, False, cfg.steps)


@contextlib.contextmanager
def _perturbed(model: nn.Module, noise: list[torch.Tensor]) -> Iterator[None]:
    """The model's parameters plus `noise` inside the block, restored afterwards."""
    saved = [p.detach().clone() for p in model.parameters()]
    for p, u in zip(model.parameters(), noise, strict=True):
        p.data.add_(u)
    try:
        yield
    finally:
        for p, w in zip(model.parameters(), saved, strict=True):
            p.data.copy_(w)


def sigma_search(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, magnitude: bool,
                 cfg: SearchConfig = SEARCH) -> Search:
    """The PAC-Bayes sigma (plain) or sigma' (`magnitude`) of `model` on (x, y)."""
    net = plain_copy(model)
    params = list(net.parameters())
    base = accuracy(net, x, y, cfg.eval_batch)

    def drop(sigma: float) -> float:
        gen = torch.Generator().manual_seed(cfg.seed)  # the same draws at every sigma
        accs = []
        for _ in range(cfg.mc_samples):
            noise = []
            for p in params:
                z = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
                std = (sigma ** 2 * p.detach() ** 2 + cfg.eps ** 2).sqrt() if magnitude \
                    else torch.full_like(p, sigma)
                noise.append(std * z)
            with _perturbed(net, noise):
                accs.append(accuracy(net, x, y, cfg.eval_batch))
        return base - sum(accs) / len(accs)

    return bisect(drop, cfg)


def alpha_search(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 cfg: SearchConfig = SEARCH) -> Search:
    """The magnitude-aware sharpness radius alpha' of `model` on (x, y)."""
    net = plain_copy(model)
    params = list(net.parameters())
    weights = [p.detach().clone() for p in params]
    base = accuracy(net, x, y, cfg.eval_batch)
    step_size = 2.0 / cfg.ascent_steps  # of the box's half-width: a side crossed in the run

    def worst(alpha: float, restart: int) -> float:
        gen = torch.Generator().manual_seed(cfg.seed * 1_000 + restart)
        boxes = [alpha * w.abs() + cfg.eps for w in weights]
        us = [(torch.rand(w.shape, generator=gen, dtype=w.dtype).to(w.device) - 0.5)
              * alpha * w.abs() for w in weights]  # U(-alpha/2, alpha/2) |w_i|
        for _ in range(cfg.ascent_steps):
            idx = torch.randperm(len(x), generator=gen)[:cfg.ascent_batch].to(x.device)
            for p, w, u in zip(params, weights, us, strict=True):
                p.data.copy_(w + u)
                p.requires_grad_(True)
                p.grad = None
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()  # ascend it
            for p, u, box in zip(params, us, boxes, strict=True):
                u.add_(step_size * box * p.grad.sign()).clamp_(min=-box, max=box)
                p.requires_grad_(False)
        for p, w, u in zip(params, weights, us, strict=True):
            p.data.copy_(w + u)
        acc = accuracy(net, x, y, cfg.eval_batch)
        for p, w in zip(params, weights, strict=True):
            p.data.copy_(w)
        return acc

    return bisect(lambda a: base - min(worst(a, r) for r in range(cfg.restarts)), cfg)


def mag_log_ratio(w: torch.Tensor, w0: torch.Tensor, sigma: float, eps: float) -> float:
    """(1/4) sum_i log[(eps^2 + (sigma^2 + 1) ||w - w0||^2 / omega) /
    (eps^2 + sigma^2 (w_i - w0_i)^2)]: the weight term of pacbayes_mag_init, w and w0
    the flattened weights (omega entries)."""
    diff = (w - w0).double()
    num = eps ** 2 + (sigma ** 2 + 1) * diff.pow(2).sum() / diff.numel()
    return float(0.25 * torch.log(num / (eps ** 2 + sigma ** 2 * diff.pow(2))).sum())
