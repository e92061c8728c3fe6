"""Norm-based generalization bounds for sparse (convolutional) networks.

Reference implementation of Galanti, Xu, Galanti, Poggio, NeurIPS 2023, as a
DVC pipeline. Importing the package pins torch's CPU kernels first
(`reproducibility.py`), so import it before torch. The maths: docs/bounds.md.
"""

from normbounds.reproducibility import pin_kernels

pin_kernels()

__version__ = "0.1.0"
