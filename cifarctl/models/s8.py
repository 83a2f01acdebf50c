"""S8: one small net, three normalizations (BatchNorm / GroupNorm / LayerNorm).

The assignment's layout is ``C1 C2 c3 P1 C3 C4 C5 c6 P2 C7 C8 C9 GAP C10`` (C = 3x3
conv block, c = 1x1 transition without norm or ReLU, P = 2x2 max-pool), under 50k
params. Skip connections follow the seed: inside each block the output of the last
3x3 conv is added to the output of the block's first conv (C2 + C1, C5 + C3, C9 + C7),
so within a block the widths are equal. Module names follow the pattern: ``conv1`` ..
``conv10`` are C1 .. C10, ``trans1``/``trans2`` are the 1x1 convs c3/c6.

C10 is a 1x1 conv (with bias) applied *after* GAP, i.e. a linear classifier on the
pooled features; ``forward`` returns plain logits of shape (N, 10), no log_softmax.

=========  ========  ====  ============  ========================
pattern    module    size  channels      RF (jump)
=========  ========  ====  ============  ========================
C1 C2      conv1-2   32    3 -> 24       5 (1), conv2 + conv1
c3 P1      trans1    16    24 -> 12      6 (2)
C3 C4 C5   conv3-5   16    12 -> 24      18 (2), conv5 + conv3
c6 P2      trans2    8     24 -> 16      20 (4)
C7 C8 C9   conv7-9   8     16 -> 32      44 (4), conv9 + conv7
GAP C10    conv10    1     32 -> 10      72
=========  ========  ====  ============  ========================
"""

from __future__ import annotations

from torch import Tensor, nn

from cifarctl.models._blocks import ConvBlock
from cifarctl.registry import Classes, Dropout, PositiveInt, register_model

# Block widths (see the table above); 43,266 params with BatchNorm.
WIDTHS = (24, 12, 24, 16, 32)
Widths = tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt, PositiveInt]  # model_args.widths


class S8Net(nn.Module):
    """The S8 network; ``norm`` is "bn", "gn" or "ln"."""

    def __init__(
        self,
        norm: str = "bn",
        groups: int = 4,
        dropout: float = 0.05,
        widths: tuple[int, int, int, int, int] = WIDTHS,
        num_classes: int = 10,
    ):
        super().__init__()
        w1, t1, w2, t2, w3 = widths

        def block(cin: int, cout: int) -> ConvBlock:
            return ConvBlock(cin, cout, 3, norm=norm, groups=groups, dropout=dropout)

        self.conv1, self.conv2 = block(3, w1), block(w1, w1)
        self.trans1 = nn.Conv2d(w1, t1, 1, bias=False)
        self.pool1 = nn.MaxPool2d(2)
        self.conv3, self.conv4, self.conv5 = block(t1, w2), block(w2, w2), block(w2, w2)
        self.trans2 = nn.Conv2d(w2, t2, 1, bias=False)
        self.pool2 = nn.MaxPool2d(2)
        self.conv7, self.conv8, self.conv9 = block(t2, w3), block(w3, w3), block(w3, w3)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.conv10 = nn.Conv2d(w3, num_classes, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        a = self.conv1(x)
        x = a + self.conv2(a)
        x = self.pool1(self.trans1(x))
        a = self.conv3(x)
        x = a + self.conv5(self.conv4(a))
        x = self.pool2(self.trans2(x))
        a = self.conv7(x)
        x = a + self.conv9(self.conv8(a))
        return self.conv10(self.gap(x)).flatten(1)


@register_model(assignment="S8", description="S8 net with BatchNorm, skips, <50k params", aliases=("s8",))
def s8_bn(dropout: Dropout = 0.05, widths: Widths = WIDTHS, num_classes: Classes = 10) -> nn.Module:
    """S8 net with BatchNorm."""
    return S8Net(norm="bn", dropout=dropout, widths=tuple(widths), num_classes=num_classes)


@register_model(assignment="S8", description="S8 net with GroupNorm (groups=4), <50k params")
def s8_gn(dropout: Dropout = 0.05, groups: PositiveInt = 4, widths: Widths = WIDTHS,
          num_classes: Classes = 10) -> nn.Module:
    """S8 net with GroupNorm."""
    return S8Net(norm="gn", groups=groups, dropout=dropout, widths=tuple(widths), num_classes=num_classes)


@register_model(assignment="S8", description="S8 net with LayerNorm (GroupNorm(1, C)), <50k params")
def s8_ln(dropout: Dropout = 0.05, widths: Widths = WIDTHS, num_classes: Classes = 10) -> nn.Module:
    """S8 net with LayerNorm."""
    return S8Net(norm="ln", dropout=dropout, widths=tuple(widths), num_classes=num_classes)
