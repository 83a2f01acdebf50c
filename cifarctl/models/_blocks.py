"""Building blocks shared by the model families.

* ``norm_layer(kind, channels, groups)``: "bn" (BatchNorm2d), "gn" (GroupNorm with
  ``groups`` groups), "ln" (LayerNorm over C,H,W written as ``GroupNorm(1, C)``, which
  also works for any spatial size), "none".
* ``ConvBlock``: conv -> norm -> ReLU -> Dropout, with "same" padding by default.
* ``SeparableConv2d``: depthwise kxk conv (``groups=in_channels``) then a pointwise 1x1.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cifarctl.errors import UsageError

NORMS = ("bn", "gn", "ln", "none")


def norm_layer(kind: str, channels: int, groups: int = 4) -> nn.Module:
    """A 2-D normalization layer for ``channels`` channels.

    ``kind`` is "bn", "gn" (``groups`` groups; must divide ``channels``), "ln"
    (``GroupNorm(1, C)``: normalizes over C, H, W per sample) or "none".
    """
    kind = (kind or "none").lower()
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "gn":
        if groups < 1 or channels % groups:
            raise UsageError(f"GroupNorm: groups={groups} must divide {channels} channels")
        return nn.GroupNorm(groups, channels)
    if kind == "ln":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise UsageError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the spatial size of a stride-1 conv."""
    return dilation * (kernel_size - 1) // 2


class SeparableConv2d(nn.Sequential):
    """Depthwise ``kernel_size`` conv (one filter per channel) followed by a 1x1 conv.

    Params: ``in*k*k`` (depthwise, no bias) + ``in*out`` (+ ``out`` with ``bias``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        bias: bool = False,
    ):
        if padding is None:
            padding = same_padding(kernel_size, dilation)
        super().__init__(
            OrderedDict(
                depthwise=nn.Conv2d(
                    in_channels, in_channels, kernel_size, stride=stride, padding=padding,
                    dilation=dilation, groups=in_channels, bias=False,
                ),
                pointwise=nn.Conv2d(in_channels, out_channels, 1, bias=bias),
            )
        )


class ConvBlock(nn.Sequential):
    """conv -> norm -> ReLU -> Dropout (dropout layer only when ``dropout > 0``).

    ``separable=True`` uses a ``SeparableConv2d`` (its pointwise bias is ``bias``).
    ``padding=None`` means "same" padding for the kernel and dilation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        norm: str = "bn",
        groups: int = 4,
        dropout: float = 0.0,
        bias: bool = False,
        separable: bool = False,
    ):
        if padding is None:
            padding = same_padding(kernel_size, dilation)
        if separable:
            conv: nn.Module = SeparableConv2d(
                in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias
            )
        else:
            conv = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                dilation=dilation, bias=bias,
            )
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv=conv, norm=norm_layer(norm, out_channels, groups), relu=nn.ReLU(inplace=True)
        )
        if dropout > 0:
            layers["drop"] = nn.Dropout(dropout)
        super().__init__(layers)


def count_params(model: nn.Module) -> int:
    """Number of parameters of ``model`` (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())
