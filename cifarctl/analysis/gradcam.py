"""Grad-CAM heat maps (Selvaraju et al., 2017) for any registered model.

Hooks on one module record its output A (N, C, h, w) and the gradient of the chosen
class score with respect to it. Channel weights are the gradient's spatial mean; the map
is ``ReLU(sum_c w_c * A_c)``, upsampled bilinearly to the input size and scaled to [0, 1]
per image (an all-zero map stays zero).

The default layer is the last ``nn.Conv2d`` (in ``named_modules`` order) whose output
still has a spatial extent: a 1x1 classifier conv after global pooling (S8's ``conv10``)
would give a constant map.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cifarctl.errors import UsageError, did_you_mean


def layer_names(model: nn.Module) -> list[str]:
    """Qualified names of every submodule (what ``cifarctl summary`` prints)."""
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; UsageError with close matches if there is none."""
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    names = layer_names(model)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    hint = did_you_mean(name, names) or f"; conv layers: {', '.join(convs[-6:])}"
    raise UsageError(f"unknown layer {name!r}{hint} (`cifarctl summary MODEL` lists the layers)")


def output_sizes(model: nn.Module, names: list[str], input_size=(1, 3, 32, 32)) -> dict[str, tuple]:
    """Output shape of each named module on one forward pass of zeros (eval, no grad)."""
    modules = dict(model.named_modules())
    shapes: dict[str, tuple] = {}
    hooks = [
        modules[n].register_forward_hook(
            lambda _m, _i, out, n=n: shapes.__setitem__(n, tuple(out.shape)) if torch.is_tensor(out) else None
        )
        for n in names
    ]
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters(), None)
        device = p.device if p is not None else "cpu"
        with torch.no_grad():
            model(torch.zeros(input_size, device=device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return shapes


def default_layer(model: nn.Module) -> str:
    """The last Conv2d whose output is larger than 1x1 (or the last Conv2d at all)."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise UsageError("Grad-CAM needs a Conv2d layer; this model has none (pick one with --layer)")
    shapes = output_sizes(model, convs)
    spatial = [n for n in convs if n in shapes and len(shapes[n]) == 4 and shapes[n][2] * shapes[n][3] > 1]
    return spatial[-1] if spatial else convs[-1]


def gradcam(model: nn.Module, x: torch.Tensor, layer: str, classes: torch.Tensor | None = None) -> torch.Tensor:
    """Grad-CAM maps (N, H, W) in [0, 1] for ``classes`` (default: the predicted ones).

    ``x`` is a normalized float batch (N, 3, H, W) on the model's device. The model is
    run in eval mode and restored to its previous mode; its parameter grads are untouched.
    """
    module = get_layer(model, layer)
    saved: dict[str, torch.Tensor] = {}

    def forward_hook(_m, _inp, out):
        if not torch.is_tensor(out):
            raise UsageError(f"layer {layer!r} does not output a tensor; pick another with --layer")
        saved["act"] = out.detach().clone()  # before any in-place op downstream
        if out.requires_grad:
            out.register_hook(lambda g: saved.__setitem__("grad", g.detach()))

    was_training = model.training
    handle = module.register_forward_hook(forward_hook)
    try:
        model.eval()
        with torch.enable_grad():
            inp = x.detach().requires_grad_(True)  # so the graph exists even for frozen params
            logits = model(inp)
            if classes is None:
                classes = logits.argmax(1)
            score = logits.gather(1, classes.view(-1, 1).to(logits.device)).sum()
            grads = torch.autograd.grad(score, inp, retain_graph=False, allow_unused=True)
            del grads
    finally:
        handle.remove()
        model.train(was_training)
    act, grad = saved.get("act"), saved.get("grad")
    if act is None or grad is None or act.dim() != 4:
        raise UsageError(f"layer {layer!r} gives no (N, C, H, W) activation with a gradient; pick a conv layer")
    weights = grad.float().mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * act.float()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
    flat = cam.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    span = (hi - lo).clamp_min(1e-12)
    return ((flat - lo) / span * (hi > lo)).view_as(cam).clamp(0, 1)


def jet(values: np.ndarray) -> np.ndarray:
    """A jet-like colour map: values in [0, 1] (any shape) -> uint8 RGB (..., 3)."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0, 1)
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255 + 0.5).astype(np.uint8)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the jet-coloured ``cam`` (H, W) over ``image`` (H, W, 3) uint8."""
    heat = jet(cam).astype(np.float32)
    out = (1 - alpha) * image.astype(np.float32) + alpha * heat
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
