"""The DVC pipeline and the `normbounds` command: params, data, training, evaluation, runs.

Everything here is used by the stages (stages/*.py), the Slurm array or the CLI, and
nothing in the two wings imports it: `normbounds.measure` (the bounds of any nn.Module)
and `normbounds.report` (figures and tables) stand alone, and import-linter keeps it so.

Importing this package pins torch's CPU kernels (`reproducibility.py`), so every stage,
which imports it before torch, runs the same kernels on every x86-64 CPU. The wings pin
nothing: an API user's process is left as it was.
"""

from normbounds.reproducibility import pin_kernels

pin_kernels()
