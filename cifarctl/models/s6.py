"""S6: atrous (dilated) and depthwise-separable convolutions with a GAP head.

The seed reports two networks, 185,936 and 151,504 params, without their code; these
two are one design with different widths that land on exactly those counts.

Four stages at 32, 16, 8 and 4 pixels, a 2x2 max-pool between stages. Each stage has
two conv blocks (conv -> BN -> ReLU -> Dropout); the second block of every stage is
dilated (d=2), and the layout mixes plain 3x3 convs ("conv") with depthwise-separable
ones ("sep": depthwise 3x3 + pointwise 1x1, the pointwise conv keeps its bias). Head:
GAP then a 1x1 conv to 10 logits (no bias). All other convs have ``bias=False``.

=====  =====  ===============  =====================  ===========================
stage  size   layers           s6_dilated widths      RF after the stage (jump)
=====  =====  ===============  =====================  ===========================
1      32     conv, sep d2     56                     7 (1), 8 (2) after the pool
2      16     sep, conv d2     72                     20 (2), 22 (4)
3      8      conv, conv d2    72                     46 (4), 50 (8)
4      4      sep, sep d2      144                    98 (8); GAP: 122
=====  =====  ===============  =====================  ===========================

``s6_dilated_lite`` uses widths (32, 56, 72, 144).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from cifarctl.models._blocks import ConvBlock
from cifarctl.registry import Classes, Dropout, register_model

# Per stage: the kind of its two blocks; the second block is dilated.
LAYOUT = (("conv", "sep"), ("sep", "conv"), ("conv", "conv"), ("sep", "sep"))
DILATION = 2


class S6Net(nn.Module):
    """Four dilated/separable stages, max-pool between them, GAP + 1x1 head."""

    def __init__(
        self,
        widths: tuple[int, int, int, int],
        dropout: float = 0.05,
        norm: str = "bn",
        num_classes: int = 10,
    ):
        super().__init__()
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        cin = 3
        for i, (kinds, width) in enumerate(zip(LAYOUT, widths), start=1):
            blocks = [
                ConvBlock(
                    cin if j == 0 else width, width, 3,
                    dilation=DILATION if j == 1 else 1,
                    norm=norm, dropout=dropout,
                    separable=kind == "sep", bias=kind == "sep",
                )
                for j, kind in enumerate(kinds)
            ]
            if i < len(LAYOUT):
                blocks.append(nn.MaxPool2d(2))
            stages[f"stage{i}"] = nn.Sequential(*blocks)
            cin = width
        self.features = nn.Sequential(stages)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Conv2d(cin, num_classes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.gap(self.features(x))).flatten(1)


@register_model(
    assignment="S6",
    description="dilated + depthwise-separable convs, GAP head (185,936 params)",
    aliases=("s6",),
)
def s6_dilated(dropout: Dropout = 0.05, num_classes: Classes = 10) -> nn.Module:
    """The seed's first S6 network: 185,936 params."""
    return S6Net((56, 72, 72, 144), dropout=dropout, num_classes=num_classes)


@register_model(
    assignment="S6",
    description="narrower first stages of s6_dilated (151,504 params)",
)
def s6_dilated_lite(dropout: Dropout = 0.05, num_classes: Classes = 10) -> nn.Module:
    """The seed's second S6 network: 151,504 params."""
    return S6Net((32, 56, 72, 144), dropout=dropout, num_classes=num_classes)
