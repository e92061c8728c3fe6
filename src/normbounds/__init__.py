"""Norm-based generalization bounds for sparse (convolutional) networks.

Reference implementation of Galanti, Xu, Galanti, Poggio, NeurIPS 2023: the bounds of
any nn.Module (`normbounds.measure`), the figures (`normbounds.report`) and the DVC
pipeline (`normbounds.pipeline`). The maths: docs/bounds.md.

Importing this package, or `normbounds.measure`, changes nothing in your process. The
pipeline pins torch's CPU kernels when `normbounds.pipeline` is imported; an API user
who wants the same pins calls `normbounds.reproducibility.pin_kernels()` before
importing torch (docs/api.md, "What importing normbounds does to your process").
"""

__version__ = "0.1.0"
