"""Norm-based generalization bounds for sparse (convolutional) networks.

Reference implementation of Galanti, Xu, Galanti, Poggio, NeurIPS 2023, as a
DVC pipeline. Modules: config (params.yaml), paths, data, models, train,
checkpoints, io, runtime.
"""

__version__ = "0.1.0"
