"""The skin-lesion network (training/skin_lesion.py builds it): a MobileNetV2-style CNN and the served
graph's softmax wrapper. Module-level classes, so a trained network pickles (test sessions share one
smoke-trained candidate between their workers); torch is imported here, and skin_lesion.py imports
this module only when it builds a network."""

from __future__ import annotations

import torch
from torch import nn


def _divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: a multiple of 8, never more than 10 % below value."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn(
    inp: int, out: int, bn_momentum: float, kernel: int = 1, stride: int = 1, groups: int = 1, relu: bool = True
) -> list[nn.Module]:
    layers = [
        nn.Conv2d(inp, out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out, momentum=bn_momentum),
    ]
    # Not in place: in-place activations make the dynamo exporter's functionalisation
    # pass several seconds slower, and buy little memory at this size.
    return layers + [nn.ReLU6()] if relu else layers


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise, 1x1 linear projection; residual when shapes allow."""

    def __init__(self, inp: int, out: int, stride: int, expand: int, bn_momentum: float):
        super().__init__()
        hidden = inp * expand
        layers = conv_bn(inp, hidden, bn_momentum) if expand != 1 else []
        layers += conv_bn(hidden, hidden, bn_momentum, 3, stride, groups=hidden)  # depthwise
        layers += conv_bn(hidden, out, bn_momentum, relu=False)  # linear bottleneck
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and inp == out

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2Small(nn.Module):
    """Inverted residual blocks (`blocks`: expansion, channels, repeats, stride), a width multiplier,
    logits out."""

    def __init__(
        self,
        n_classes: int,
        blocks: tuple[tuple[int, int, int, int], ...],
        width_multiplier: float,
        last_channels: int,
        dropout: float,
        bn_momentum: float,
    ):
        super().__init__()
        channels = _divisible(32 * width_multiplier)
        layers = conv_bn(3, channels, bn_momentum, 3, 2)
        for t, c, n, s in blocks:
            out = _divisible(c * width_multiplier)
            for i in range(n):
                layers.append(InvertedResidual(channels, out, s if i == 0 else 1, t, bn_momentum))
                channels = out
        layers += conv_bn(channels, last_channels, bn_momentum)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, n_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


class Probabilities(nn.Module):
    """The served graph: logits -> class probabilities."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image):
        return torch.softmax(self.net(image), dim=1)
