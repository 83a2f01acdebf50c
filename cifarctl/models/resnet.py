"""Standard CIFAR ResNets (the kuangliu/pytorch-cifar layout).

3x3 stem conv to 64 channels with BN and ReLU (no stem max-pool: 32x32 images are
small), four stages of ``BasicBlock`` at 64/128/256/512 channels (stride 2 from the
second stage on, 1x1 conv + BN shortcut when the shape changes), adaptive average
pooling and a linear layer to 10 logits. resnet18 has 11,173,962 params.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cifarctl.registry import Classes, Dropout, register_model


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut; ReLU after the sum."""

    expansion = 1

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A CIFAR ResNet with ``num_blocks`` BasicBlocks per stage."""

    def __init__(self, num_blocks: tuple[int, int, int, int], num_classes: int = 10, dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin, layers = 64, []
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlock(cin, width, stride=2 if i > 0 and j == 0 else 1))
                cin = width
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear(self.dropout(self.avgpool(x).flatten(1)))


@register_model(assignment="S11", description="ResNet-18 for CIFAR (kuangliu), 11.2M params")
def resnet18(dropout: Dropout = 0.0, num_classes: Classes = 10) -> nn.Module:
    """ResNet-18: two BasicBlocks per stage."""
    return ResNet((2, 2, 2, 2), dropout=dropout, num_classes=num_classes)


@register_model(assignment="S11", description="ResNet-34 for CIFAR (kuangliu), 21.3M params")
def resnet34(dropout: Dropout = 0.0, num_classes: Classes = 10) -> nn.Module:
    """ResNet-34: 3, 4, 6, 3 BasicBlocks per stage."""
    return ResNet((3, 4, 6, 3), dropout=dropout, num_classes=num_classes)
