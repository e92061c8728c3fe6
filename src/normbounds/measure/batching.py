"""How many samples one evaluation batch holds: sized from the device, never a result.

Every value the bounds and errors report is independent of the batch (sums and
maxima over samples), so the batch only trades memory for speed.
"""

from __future__ import annotations

import torch

CPU_BATCH_BYTES = 32 << 20  # float64 activations of one CPU evaluation batch (cache-sized)
GPU_MEMORY_SHARE = 0.25  # of the free device memory, for one evaluation batch
MAX_EVAL_BATCH = 8192


def eval_batch_size(setting: int | str, sample_bytes: int, device: torch.device) -> int:
    """bound.eval_batch_size: the number itself, or for `auto` the batch whose float64
    activations (sample_bytes per input) fill the device's budget: 32 MiB on a CPU,
    where larger batches were measured slower (page faults on large activations),
    and a quarter of the free memory on a GPU. No value depends on the batch."""
    if setting != "auto":
        return int(setting)
    if device.type == "cuda":
        budget = torch.cuda.mem_get_info(device)[0] * GPU_MEMORY_SHARE
    else:
        budget = CPU_BATCH_BYTES
    return int(max(1, min(MAX_EVAL_BATCH, budget // max(1, sample_bytes))))

