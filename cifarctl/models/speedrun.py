"""The speedrun family: an airbench94-style network (Keller Jordan's cifar10-airbench).

A 2x2 patch-whitening first conv whose weights are set from the training data (the
eigenvectors of the patch covariance, scaled by 1/sqrt(eigenvalue), and their
negatives) and then frozen; three conv groups (conv -> maxpool -> BN -> GELU -> conv ->
BN -> GELU) of widths 64/256/256 with BatchNorm scales frozen at 1; maxpool 3; a linear
head scaled by 1/9. Two hooks the engine calls when a model has them
(:mod:`cifarctl.training.model_hooks`): ``data_init(images)`` with normalized training images
before the first step of a fresh run, and ``frozen_parameters(epoch)`` (the whitening
bias trains only during the first ``whiten_bias_epochs``; after them the engine keeps it
as it is).
"""

from __future__ import annotations

import torch
from torch import nn

from cifarctl.registry import Classes, Fraction, NonNegativeInt, PositiveInt, register_model


class _BatchNorm(nn.BatchNorm2d):
    """BatchNorm whose scale is frozen at 1 by default (airbench: only the bias is learned)."""

    def __init__(self, channels: int, momentum: float = 0.6, eps: float = 1e-12, frozen_scale: bool = True):
        super().__init__(channels, eps=eps, momentum=1 - momentum)  # airbench's momentum: weight of the old
        self.weight.requires_grad = not frozen_scale


class _ConvGroup(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, **bn):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = _BatchNorm(channels_out, **bn)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.norm2 = _BatchNorm(channels_out, **bn)
        self.activ = nn.GELU()

    def forward(self, x):
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))


class SpeedrunNet(nn.Module):
    """airbench94's network; ``whiten`` is set from data by ``data_init``."""

    def __init__(self, widths: tuple[int, int, int] = (64, 256, 256), whiten_kernel: int = 2,
                 bn_momentum: float = 0.6, freeze_bn_scale: bool = True, whiten_bias_epochs: int = 3,
                 num_classes: int = 10):
        super().__init__()
        whiten_width = 2 * 3 * whiten_kernel**2
        self.whiten = nn.Conv2d(3, whiten_width, whiten_kernel, padding=0, bias=True)
        self.whiten.weight.requires_grad = False
        self.whiten_bias_epochs = whiten_bias_epochs
        self.activ = nn.GELU()
        bn = {"momentum": bn_momentum, "frozen_scale": freeze_bn_scale}
        self.block1 = _ConvGroup(whiten_width, widths[0], **bn)
        self.block2 = _ConvGroup(widths[0], widths[1], **bn)
        self.block3 = _ConvGroup(widths[1], widths[2], **bn)
        self.pool = nn.MaxPool2d(3)
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.scale = 1 / 9
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m is not self.whiten:
                w = m.weight.data
                torch.nn.init.dirac_(w[: w.size(1)])  # identity-initialised convs, as airbench

    @torch.no_grad()
    def data_init(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening conv from normalized training images (N,3,H,W): the patch
        covariance's eigenvectors, largest eigenvalue first, over sqrt(eigenvalue + eps),
        and their negatives; the bias is zeroed."""
        k = self.whiten.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)
        patches = patches.transpose(1, 3).reshape(-1, 3, k, k).float()
        flat = patches.view(len(patches), -1)
        cov = (flat.T @ flat) / len(flat)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov, UPLO="U")
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.reshape(-1, 3, k, k).flip(0)
        scaled = eigenvectors / torch.sqrt(eigenvalues.view(-1, 1, 1, 1) + eps)
        self.whiten.weight.copy_(torch.cat((scaled, -scaled)).to(self.whiten.weight.dtype))
        self.whiten.bias.zero_()

    def frozen_parameters(self, epoch: int) -> list[nn.Parameter]:
        """What stays put in epoch ``epoch`` (0-based): the whitening bias trains only in
        the first ``whiten_bias_epochs`` (the engine's :class:`~cifarctl.training.model_hooks.Freezer`)."""
        return [] if epoch < self.whiten_bias_epochs else [self.whiten.bias]

    def forward(self, x):
        x = self.activ(self.whiten(x))
        x = self.block3(self.block2(self.block1(x)))
        x = self.pool(x).flatten(1)
        return self.head(x) * self.scale


@register_model(assignment="speedrun", description="airbench94-style net: patch whitening, frozen BN scales")
def speedrun_net(widths: tuple[PositiveInt, PositiveInt, PositiveInt] = (64, 256, 256),
                 bn_momentum: Fraction = 0.6, freeze_bn_scale: bool = True,
                 whiten_bias_epochs: NonNegativeInt = 3, num_classes: Classes = 10) -> nn.Module:
    """airbench94-style network for the speedrun recipe.

    ``bn_momentum`` is airbench's (the weight of the old running statistics: torch's
    momentum is 1 - it); ``freeze_bn_scale`` keeps every BatchNorm weight at 1;
    ``whiten_bias_epochs`` is how many epochs the whitening conv's bias trains.
    """
    return SpeedrunNet(tuple(widths), bn_momentum=bn_momentum, freeze_bn_scale=freeze_bn_scale,
                       whiten_bias_epochs=whiten_bias_epochs, num_classes=num_classes)
