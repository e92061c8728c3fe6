"""The DVC pipeline and the `normbounds` command: params, data, training, evaluation, runs.

Everything here is used by the stages (stages/*.py), the Slurm array or the CLI, and
nothing in the two wings imports it: `normbounds.measure` (the bounds of any nn.Module)
and `normbounds.report` (figures and tables) stand alone, and import-linter keeps it so.
"""
