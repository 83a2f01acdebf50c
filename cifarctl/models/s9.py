"""S9: C1-C2-C3-C4-output without max-pooling.

Each of the four blocks holds three conv blocks (conv -> BN -> ReLU -> Dropout). The
first three blocks end with a stride-2 3x3 conv that halves the size (no max-pool
anywhere); C2 uses depthwise-separable convs and ends with a dilated (d=2) strided
conv, C3 and C4 are separable with one dilated conv each, the output is GAP then a
1x1 conv to 10 logits (no bias).

=====  =====  ==============================================  =============
block  size   layers (-> out channels)                        RF at the end
=====  =====  ==============================================  =============
C1     32     conv 32, conv 32, conv s2 32                    7 -> 16x16
C2     16     sep 48, sep 64, conv d2 s2 64                   23 -> 8x8
C3     8      sep 96, sep d2 96, sep s2 96                    55 -> 4x4
C4     4      sep 128, sep d2 128, conv 1x1 128               103
out    1      GAP, 1x1 conv 128 -> 10                         127
=====  =====  ==============================================  =============

138,608 params. ``widths`` (``model_args.widths``) sets the out channels of the twelve
conv blocks in order (C1 x3, C2 x3, C3 x3, C4 x3); the layout above is the default.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from torch import Tensor, nn

from cifarctl.models._blocks import ConvBlock
from cifarctl.registry import Classes, Dropout, PositiveInt, register_model

# (out channels, kernel, stride, dilation, separable) per conv block, four blocks.
LAYOUT: tuple[tuple[tuple[int, int, int, int, bool], ...], ...] = (
    ((32, 3, 1, 1, False), (32, 3, 1, 1, False), (32, 3, 2, 1, False)),
    ((48, 3, 1, 1, True), (64, 3, 1, 1, True), (64, 3, 2, 2, False)),
    ((96, 3, 1, 1, True), (96, 3, 1, 2, True), (96, 3, 2, 1, True)),
    ((128, 3, 1, 1, True), (128, 3, 1, 2, True), (128, 1, 1, 1, False)),
)

WIDTHS = tuple(cout for block in LAYOUT for cout, *_ in block)
Widths = Annotated[tuple[PositiveInt, ...], Field(min_length=12, max_length=12)]  # model_args.widths


class S9Net(nn.Module):
    """Four conv blocks (C1..C4), strided/dilated downsampling, GAP + 1x1 head."""

    def __init__(
        self,
        dropout: float = 0.05,
        norm: str = "bn",
        widths: tuple[int, ...] = WIDTHS,
        num_classes: int = 10,
    ):
        super().__init__()
        cin = 3
        outs = iter(widths)
        for i, block in enumerate(LAYOUT, start=1):
            layers = []
            for _, k, stride, dilation, sep in block:
                cout = next(outs)
                layers.append(
                    ConvBlock(
                        cin, cout, k, stride=stride, dilation=dilation, norm=norm,
                        dropout=dropout, separable=sep,
                    )
                )
                cin = cout
            self.add_module(f"c{i}", nn.Sequential(*layers))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Conv2d(cin, num_classes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x = self.c4(self.c3(self.c2(self.c1(x))))
        return self.head(self.gap(x)).flatten(1)


@register_model(
    assignment="S9",
    description="C1-C2-C3-C4, no max-pool: strided, dilated and separable convs, GAP",
    aliases=("s9",),
)
def s9_dilated(dropout: Dropout = 0.05, widths: Widths = WIDTHS, num_classes: Classes = 10) -> nn.Module:
    """The S9 network."""
    return S9Net(dropout=dropout, widths=tuple(widths), num_classes=num_classes)
