"""A user's own network for the pipeline: `model.family: custom` with
`model.factory: examples.small_cnn:build` (docs/api.md, "Through the pipeline").

`depth` zero-padded 3x3 conv layers with biases ("same" padding, the last of
stride 2), ReLU between them, then a linear head with a bias. The bounds read
it through network.py: padding and biases are covered, so nothing is refused.
"""

from torch import nn


def build(in_shape: tuple[int, int, int], num_classes: int, depth: int,
          width: int) -> nn.Module:
    channels, side, _ = in_shape
    layers: list[nn.Module] = []
    for layer in range(depth):
        stride = 2 if layer == depth - 1 else 1
        layers += [nn.Conv2d(channels if layer == 0 else width, width, 3, stride=stride,
                             padding=1), nn.ReLU()]
    out = (side + 2 - 3) // 2 + 1  # the last layer halves the side
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(width * out * out, num_classes))
