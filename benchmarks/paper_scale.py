"""The paper profile's cost on the device present, run by hand (`make bench-paper`).

For CONV-3-W on 28x28 inputs (batch 32, as `make paper`) it measures the seconds
per training step, the achieved TFLOP/s against the device's dense peak (a table
for common GPUs; on CPU the float32 matmul rate measured here), the checkpoint
size (slim) against the old format (with the optimizer's momentum), and the
per-checkpoint evaluation split into its parts. It then projects `make paper`
(MNIST 60k, widths 200/600/1000, 5 seeds, 500 epochs, a checkpoint every 10):
the wall time from the FLOPs at the measured rate, and the disk.

    python benchmarks/paper_scale.py [--widths 8 16 32] [--steps 50]
        [--precisions fp32 tf32 bf16] [--compile none default reduce-overhead]

On CPU use small widths: the projection for the paper's widths scales the rate
measured at the widest one measured.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from normbounds.measure.options import BoundConfig
from normbounds.pipeline import checkpoints
from normbounds.pipeline.config import Config, ModelConfig, TrainConfig
from normbounds.pipeline.data import Split
from normbounds.pipeline.evaluate import evaluate_model
from normbounds.pipeline.losses import LOSSES
from normbounds.pipeline.models import Arch, GridNet
from normbounds.pipeline.precision import (
    COMPILE_MODES,
    PRECISIONS,
    compiled,
    forward_context,
    tf32_products,
)
from normbounds.pipeline.runtime import resolve_device

PEAK_TFLOPS = {  # dense fp32 / tf32 / bf16 tensor-core peaks (vendor data sheets, SXM)
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
}
PAPER = {"widths": (200, 600, 1000), "seeds": 5, "epochs": 500, "m": 60000, "batch": 32,
         "checkpoints": len(checkpoints.save_epochs(500, 10))}


def forward_flops(width: int, side: int = 28, depth: int = 3, k: int = 2, classes: int = 10,
                  channels: int = 1) -> float:
    """Multiply-adds x 2 of one image's forward pass through CONV-depth-width."""
    flops, c, n = 0.0, channels, side
    for _ in range(depth):
        n = n - k + 1
        flops += 2.0 * c * width * k * k * n * n
        c = width
    return flops + 2.0 * width * n * n * classes


def peak(device: torch.device) -> tuple[float, str]:
    """The dense fp32 peak in TFLOP/s: a data-sheet value for a known GPU, else measured."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peaks in PEAK_TFLOPS.items():
            if key in name:
                return peaks["fp32"], f"{name} data sheet (fp32)"
    a = torch.randn(2048, 2048, device=device)
    a @ a
    start, reps = time.perf_counter(), 10
    for _ in range(reps):
        a @ a
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * 2048 ** 3 * reps / (time.perf_counter() - start) / 1e12, "measured matmul"


def step_seconds(width: int, steps: int, device: torch.device, precision: str = "fp32",
                 compile_mode: str = "none") -> float:
    """Seconds per batch-32 training step under train.precision and train.compile."""
    model = GridNet(Arch((1, 28, 28), 10, 3, width)).to(device)
    step_model = compiled(model, compile_mode)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=3e-3)
    loss = LOSSES["mse"](10)
    x = torch.rand(32, 1, 28, 28, device=device)
    y = torch.arange(32, device=device) % 10
    with tf32_products(PRECISIONS[precision].tf32):
        for i in range(steps + 5):  # 5 warm-up steps (compilation happens in the first)
            if i == 5:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with forward_context(precision, device):
                batch_loss = loss(step_model(x), y)
            batch_loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def sizes(width: int) -> tuple[int, int]:
    """(slim checkpoint bytes, old-format bytes: the same plus the momentum buffers)."""
    model = GridNet(Arch((1, 28, 28), 10, 3, width))
    weights = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    with tempfile.TemporaryDirectory() as tmp:
        state = {"epoch": 1, "arch": model.arch.to_dict(), "config": {}, "history": [],
                 "model": model.state_dict()}
        slim = checkpoints.save(state, Path(tmp)).stat().st_size
    return slim, slim + weights


def evaluation_parts(width: int, device: torch.device, m: int = 1000) -> dict[str, float]:
    model = GridNet(Arch((1, 28, 28), 10, 3, width)).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    train = Split(torch.rand(m, 1, 28, 28, generator=gen), torch.arange(m) % 10).to(device)
    stats = {"m": m, "num_classes": 10, "P": 1.0, "S": 1.0, "X": 1.0,
             "input_shape": [1, 28, 28]}
    cfg = Config(model=ModelConfig(), train=TrainConfig(), bound=BoundConfig())
    timings: dict[str, float] = {}
    evaluate_model(model, stats, cfg, train, train, "mse", timings=timings)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="*", default=[8, 16, 32])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--precisions", nargs="*", default=["fp32"], choices=list(PRECISIONS))
    parser.add_argument("--compile", nargs="*", default=["none"], choices=list(COMPILE_MODES),
                        dest="compile_modes")
    args = parser.parse_args()
    device = resolve_device("auto")
    top, source = peak(device)
    print(f"device {device}: fp32 peak {top:.3g} TFLOP/s ({source})")
    print(f"{'W':>5} {'s/step':>8} {'s/epoch':>8} {'TFLOP/s':>8} {'of peak':>8}"
          f" {'ckpt MB':>8} {'old MB':>8} {'errors s':>9} {'bounds s':>9}")
    rate = None
    for width in args.widths:
        sec = step_seconds(width, args.steps, device)
        rate = 3 * forward_flops(width) * 32 / sec / 1e12  # forward + backward ~ 3 forwards
        slim, old = sizes(width)
        parts = evaluation_parts(width, device)
        print(f"{width:>5} {sec:>8.4f} {sec * PAPER['m'] / 32:>8.1f} {rate:>8.3g}"
              f" {rate / top:>8.1%} {slim / 1e6:>8.3f} {old / 1e6:>8.3f}"
              f" {parts['errors']:>9.3f} {parts['bounds']:>9.3f}")
    combos = [(p, c) for p in args.precisions for c in args.compile_modes]
    if combos != [("fp32", "none")]:
        print("\nseconds per step by train.precision and train.compile"
              " (speed-up: fp32 without compile, measured alongside, over it)")
        for width in args.widths:
            base = step_seconds(width, args.steps, device)
            for prec, mode in combos:
                sec = step_seconds(width, args.steps, device, prec, mode)
                print(f"{width:>5} {prec:>5} {mode:>16} {sec:>8.4f} {base / sec:>6.2f}x")
    hours = sum(3 * forward_flops(w) * PAPER["m"] * PAPER["epochs"] * PAPER["seeds"]
                for w in PAPER["widths"]) / (rate * 1e12) / 3600
    disk = sum(sizes(w)[0] for w in PAPER["widths"]) * PAPER["seeds"] * PAPER["checkpoints"]
    old = sum(sizes(w)[1] for w in PAPER["widths"]) * PAPER["seeds"] * PAPER["checkpoints"]
    print(f"\n`make paper` projection (widths {PAPER['widths']}, {PAPER['seeds']} seeds,"
          f" {PAPER['epochs']} epochs, {PAPER['checkpoints']} checkpoints per run), training at"
          f" {rate:.3g} TFLOP/s (measured at width {args.widths[-1]}): {hours:.1f} h;"
          f" checkpoints {disk / 1e9:.1f} GB (old format {old / 1e9:.1f} GB,"
          f" ratio {disk / old:.2f})")


if __name__ == "__main__":
    main()
