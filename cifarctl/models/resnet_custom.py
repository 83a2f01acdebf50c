"""S10: the "custom ResNet" (David Page's DAWNBench net) used for the 24-epoch run.

======  ==================================================  =====  =========
layer   what                                                size   RF (jump)
======  ==================================================  =====  =========
prep    conv 3->64, BN, ReLU                                32     3 (1)
layer1  X = conv 64->128, maxpool 2, BN, ReLU;              16     6 (2)
        R1 = 2 x (conv 128->128, BN, ReLU); out = X + R1           14 (2)
layer2  conv 128->256, maxpool 2, BN, ReLU                  8      20 (4)
layer3  X = conv 256->512, maxpool 2, BN, ReLU;             4      32 (8)
        R2 = 2 x (conv 512->512, BN, ReLU); out = X + R2           64 (8)
pool    MaxPool2d(4)                                        1      88 (32)
fc      flatten, Linear 512->10 (with bias)
======  ==================================================  =====  =========

All convs are 3x3, padding 1, ``bias=False``; a Dropout (``dropout``, default 0, so a
no-op) follows every ReLU as in the seed. 6,573,130 params, the seed's torchsummary
total; the forward pass returns logits (the seed's negative "losses" came from
applying NLL to non-log-probabilities).
"""

from __future__ import annotations

from torch import Tensor, nn

from cifarctl.registry import Classes, Dropout, register_model


def _conv_bn(cin: int, cout: int, dropout: float, pool: bool = False) -> nn.Sequential:
    """conv 3x3 [-> maxpool 2] -> BN -> ReLU -> Dropout."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class ResLayer(nn.Module):
    """``X = conv-pool-BN-ReLU(x)``, then ``X + R(X)`` where R is two conv-BN-ReLU."""

    def __init__(self, cin: int, cout: int, dropout: float, residual: bool = True):
        super().__init__()
        self.conv = _conv_bn(cin, cout, dropout, pool=True)
        self.res = (
            nn.Sequential(_conv_bn(cout, cout, dropout), _conv_bn(cout, cout, dropout))
            if residual
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        return x if self.res is None else x + self.res(x)


class CustomResNet(nn.Module):
    """prep -> layer1 (res) -> layer2 -> layer3 (res) -> MaxPool(4) -> Linear."""

    def __init__(self, dropout: float = 0.0, num_classes: int = 10):
        super().__init__()
        self.prep = _conv_bn(3, 64, dropout)
        self.layer1 = ResLayer(64, 128, dropout)
        self.layer2 = ResLayer(128, 256, dropout, residual=False)
        self.layer3 = ResLayer(256, 512, dropout)
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer3(self.layer2(self.layer1(self.prep(x))))
        return self.fc(self.pool(x).flatten(1))


@register_model(
    assignment="S10",
    description="custom ResNet (prep, 3 layers, 2 residual blocks), 6,573,130 params",
    aliases=("custom_resnet",),
)
def resnet_custom(dropout: Dropout = 0.0, num_classes: Classes = 10) -> nn.Module:
    """The S10 custom ResNet."""
    return CustomResNet(dropout=dropout, num_classes=num_classes)
