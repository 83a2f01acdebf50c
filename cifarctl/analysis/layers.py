"""Layer-by-layer model summary with receptive fields, from one real forward pass.

``summarize(model)`` runs a batch of one random image through the model (eval mode,
no grad) and records, like torchinfo, one row per module call in execution order:
output shape, params, mult-adds and, for conv/pool layers, kernel, stride, dilation and
padding. It also tracks the receptive field (RF) and jump of every tensor:

* every torch call is seen through a ``TorchFunctionMode``; each output tensor gets the
  (rf, jump) of its inputs, so RF follows the real data flow, not the module order;
* conv and pooling calls apply ``r_out = r_in + (k - 1) * d * j_in`` and
  ``j_out = j_in * s``; adaptive pooling uses ``s = in // out`` and
  ``k = in - (out - 1) * s`` (a global pool covers its whole input), and so does any
  op that collapses the spatial dims (``flatten``, ``mean((2, 3))``, ``view``);
* an op with several traced inputs (``a + b``, ``torch.cat``) takes the max over its
  inputs: the path that grows the RF most. The module whose forward did the merge gets
  the note "residual: max over N paths" (for merges in the top-level forward, the next
  module that reads the merged tensor gets it).

RF and jump are measured along the height axis (all registered models are square).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from cifarctl import registry
from cifarctl.bundled import bundled_recipes
from cifarctl.errors import CifarctlError, UsageError
from cifarctl.recipe.load import load_recipe
from cifarctl.training.builders import build_model

# Argument names of the spatial functions, for positional/keyword normalization.
_ARGS = {
    "conv2d": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "max_pool2d": ("input", "kernel_size", "stride", "padding", "dilation"),
    "avg_pool2d": ("input", "kernel_size", "stride", "padding"),
    "lp_pool2d": ("input", "norm_type", "kernel_size", "stride"),
    "adaptive_avg_pool2d": ("input", "output_size"),
    "adaptive_max_pool2d": ("input", "output_size"),
}
NOTE_MERGE = "residual: max over {n} paths"
NOTE_AFTER_MERGE = "input: residual sum, max over {n} paths"
# GroupNorm (LayerNorm = GroupNorm(1, C)) and InstanceNorm normalise each sample with
# statistics taken over its whole feature map, so at train and test time every output
# also depends, through those statistics, on every input pixel. BatchNorm in eval mode
# uses fixed running statistics and adds no such path.
_PER_SAMPLE_NORMS = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.InstanceNorm1d, torch.nn.InstanceNorm2d,
                     torch.nn.InstanceNorm3d)
NOTE_PER_SAMPLE_NORM = ("RF is the convolution path's; {kinds} normalises each image with statistics over "
                        "its whole feature map, so every output also depends on every input pixel through them")


@dataclass
class ModelSummary:
    """What ``summarize`` measured; ``to_dict()`` gives a JSON-ready dict."""

    model: str
    input_size: tuple[int, ...]
    total_params: int
    trainable_params: int
    non_trainable_params: int
    mult_adds: int  # conv + linear multiply-accumulates, batch 1
    input_bytes: int
    param_bytes: int
    buffer_bytes: int
    activation_bytes: int  # outputs of every leaf-module call, batch 1
    forward_backward_bytes: int  # 2 x activation_bytes, torchsummary's "pass size"
    receptive_field: int | None
    jump: int | None
    depth: int | None = None
    layers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # caveats on the receptive field

    @property
    def total_bytes(self) -> int:
        """torchsummary's "estimated total size": input + forward/backward + params."""
        return self.input_bytes + self.forward_backward_bytes + self.param_bytes

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (lists instead of tuples) that ``json.dumps`` accepts."""
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["total_bytes"] = self.total_bytes
        return d


def _pair(v: Any, default: int) -> tuple[int, int] | str:
    if v is None or (isinstance(v, (tuple, list)) and len(v) == 0):
        return (default, default)
    if isinstance(v, str):  # padding="same"/"valid"
        return v
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def _tensors(obj: Any):
    """Every tensor inside nested tuples/lists/dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def _first_tensor(obj: Any) -> torch.Tensor | None:
    return next(_tensors(obj), None)


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", "")
    name = name.lstrip("_")
    return name.removesuffix("_with_indices")


def _bound(name: str, args: tuple, kwargs: dict) -> dict[str, Any]:
    names = _ARGS[name]
    out = dict(zip(names, args))
    out.update({k: v for k, v in kwargs.items() if k in names})
    return out


class _Tracer(TorchFunctionMode):
    """Propagates (rf, jump) from input to output tensors of every torch call."""

    def __init__(self) -> None:
        super().__init__()
        self.rf: dict[int, tuple[int, int]] = {}
        self.merged: dict[int, int] = {}  # id of a tensor summed in the top-level forward -> paths
        self.keep: list[torch.Tensor] = []  # keeps ids unique during the pass
        self.stack: list[dict[str, Any]] = []  # module calls in progress
        self.mult_adds = 0

    def register(self, t: torch.Tensor, r: int = 1, j: int = 1) -> None:
        self.keep.append(t)
        self.rf[id(t)] = (r, j)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._track(func, args, kwargs, out)
        return out

    def _track(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        outs = list(_tensors(out))
        if not outs:
            return
        seen: dict[int, torch.Tensor] = {}
        for t in _tensors((args, kwargs)):
            if id(t) in self.rf:
                seen.setdefault(id(t), t)
        if not seen:
            return
        ins = list(seen.values())
        r = max(self.rf[id(t)][0] for t in ins)
        j = max(self.rf[id(t)][1] for t in ins)
        name = _op_name(func)
        top = self.stack[-1] if self.stack else None
        inp = ins[0]
        if name in _ARGS and inp.dim() >= 3:
            b = _bound(name, args, kwargs)
            k, s, d, p = self._spatial(name, b, inp, outs[0])
            r, j = r + (k[0] - 1) * d[0] * j, j * s[0]
            if name == "conv2d":
                w = b["weight"]
                self._macs(top, outs[0].numel() * w.shape[1] * k[0] * k[1])
            if top is not None and top.get("kernel") is None:
                top.update(kernel=list(k), stride=list(s), dilation=list(d),
                           padding=p if isinstance(p, str) else list(p))
        elif inp.dim() >= 4 and inp.shape[-2] > 1 and (
            outs[0].dim() <= 2 or (outs[0].dim() == inp.dim() and outs[0].shape[-2] == 1)
        ):
            h = inp.shape[-2]  # the op collapses the spatial dims: a global pool
            r, j = r + (h - 1) * j, j * h
        if name == "linear":
            w = args[1] if len(args) > 1 else kwargs["weight"]
            self._macs(top, outs[0].numel() * w.shape[-1])
        merged = len(ins) if len(ins) > 1 else 0
        if merged and top is not None:
            top["merges"] = max(top.get("merges", 0), merged)
        at_root = top is not None and top["depth"] == 0
        if at_root and not merged:  # e.g. relu(a + b) in the top-level forward
            merged = max(self.merged.get(id(t), 0) for t in ins)
        for t in outs:
            self.keep.append(t)
            self.rf[id(t)] = (r, j)
            if merged and at_root:
                self.merged[id(t)] = merged

    def _macs(self, top: dict[str, Any] | None, n: int) -> None:
        self.mult_adds += int(n)
        if top is not None:
            top["mult_adds"] += int(n)

    @staticmethod
    def _spatial(name: str, b: dict[str, Any], inp: torch.Tensor, out: torch.Tensor):
        """Kernel, stride, dilation, padding of a conv/pool call."""
        if name.startswith("adaptive"):
            ins, outs = inp.shape[-2:], out.shape[-2:]
            s = tuple(max(i // max(o, 1), 1) for i, o in zip(ins, outs))
            k = tuple(i - (o - 1) * st for i, o, st in zip(ins, outs, s))
            return k, s, (1, 1), (0, 0)
        if name == "conv2d":
            k = tuple(b["weight"].shape[-2:])
            s = _pair(b.get("stride"), 1)
        else:
            k = _pair(b.get("kernel_size"), 1)
            s = _pair(b.get("stride"), 0)
            s = k if s == (0, 0) else s
        return k, s, _pair(b.get("dilation"), 1), _pair(b.get("padding"), 0)


def summarize(
    model: nn.Module,
    input_size: tuple[int, ...] = (3, 32, 32),
    depth: int | None = None,
    name: str | None = None,
) -> ModelSummary:
    """Summarize ``model`` with one forward pass on a (1, *input_size) random batch.

    ``depth`` keeps only rows of modules nested at most that deep (``layer1`` is 1,
    ``layer1.0`` is 2); the totals always cover the whole model.
    """
    tracer = _Tracer()
    params = {id(m): sum(p.numel() for p in m.parameters()) for m in model.modules()}
    leaves = {id(m) for m in model.modules() if not any(True for _ in m.children())}
    records: list[dict[str, Any]] = []
    handles = []

    def pre_hook(mod_name: str, depth_: int):
        def hook(module: nn.Module, inputs: Any) -> None:
            rec = {"name": mod_name, "type": type(module).__name__, "depth": depth_,
                   "params": params.get(id(module), 0), "leaf": id(module) in leaves,
                   "mult_adds": 0, "kernel": None, "stride": None, "dilation": None,
                   "padding": None, "merges": 0, "note": "", "args": module.extra_repr()}
            if tracer.stack and tracer.stack[-1]["depth"] == 0:
                paths = max((tracer.merged.get(id(t), 0) for t in _tensors(inputs)), default=0)
                if paths:
                    rec["note"] = NOTE_AFTER_MERGE.format(n=paths)
            records.append(rec)
            tracer.stack.append(rec)
        return hook

    def post_hook(module: nn.Module, inputs: Any, output: Any) -> None:
        rec = tracer.stack.pop()
        if tracer.stack:
            tracer.stack[-1]["mult_adds"] += rec["mult_adds"]
        out = _first_tensor(output)
        rec["output_shape"] = list(out.shape) if out is not None else None
        rec["out_bytes"] = out.numel() * out.element_size() if out is not None else 0
        r, j = tracer.rf.get(id(out), (None, None)) if out is not None else (None, None)
        rec["rf"], rec["jump"] = r, j
        if rec["merges"]:
            rec["note"] = NOTE_MERGE.format(n=rec["merges"])

    for mod_name, module in model.named_modules():
        d = mod_name.count(".") + 1 if mod_name else 0
        handles.append(module.register_forward_pre_hook(pre_hook(mod_name, d)))
        handles.append(module.register_forward_hook(post_hook))

    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((1, *input_size), generator=gen).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), tracer:
            tracer.register(x)
            y = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    out = _first_tensor(y)
    final = tracer.rf.get(id(out)) if out is not None else None
    all_params = list(model.parameters())
    total = sum(p.numel() for p in all_params)
    trainable = sum(p.numel() for p in all_params if p.requires_grad)
    act = sum(r["out_bytes"] for r in records if r["leaf"] and r["depth"] > 0)
    layers = []
    for r in records:
        if r["depth"] == 0 or (depth is not None and r["depth"] > depth):
            continue
        row = {k: v for k, v in r.items() if k not in ("out_bytes", "merges")}
        layers.append(row)
    per_sample = sorted({type(m).__name__ for m in model.modules() if isinstance(m, _PER_SAMPLE_NORMS)})
    notes = [NOTE_PER_SAMPLE_NORM.format(kinds="/".join(per_sample))] if per_sample else []
    return ModelSummary(
        model=name or type(model).__name__,
        input_size=tuple(input_size),
        total_params=total,
        trainable_params=trainable,
        non_trainable_params=total - trainable,
        mult_adds=tracer.mult_adds,
        input_bytes=math.prod(input_size) * 4,
        param_bytes=sum(p.numel() * p.element_size() for p in all_params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
        activation_bytes=act,
        forward_backward_bytes=2 * act,
        receptive_field=final[0] if final else None,
        jump=final[1] if final else None,
        depth=depth,
        layers=layers,
        notes=notes,
    )


def summarize_recipe(recipe, *, input_size: tuple[int, ...] | None = None, depth: int | None = None,
                     model: nn.Module | None = None) -> ModelSummary:
    """:func:`summarize` of the recipe's model, built as training builds it (``model_args`` included)
    unless the caller has built it (``model``), on ``input_size`` (default: 3 x ``data.image_size``
    squared, what the run feeds it)."""
    if input_size is None:
        input_size = (3, recipe.data.image_size, recipe.data.image_size)
    model = build_model(recipe) if model is None else model
    try:
        return summarize(model, input_size=input_size, depth=depth, name=recipe.model)
    except RuntimeError as exc:  # e.g. an input too small for the network's pooling
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UsageError(f"{recipe.model}: forward pass failed for input {tuple(input_size)}: {first}") from exc


def model_rows(pattern: str = "*") -> list[dict[str, Any]]:
    """One dict per registered model matching ``pattern``: name, aliases, params, assignment,
    description. A plain word matches anywhere in a name; ``*?[`` make it a glob.

    Models are built on the ``meta`` device, so counting params allocates nothing.
    """
    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"  # a plain word matches anywhere in the name
    rows = []
    for name in registry.list_models(pattern):
        entry = registry.get_entry(name)
        with torch.device("meta"):
            model = registry.create_model(name)
        rows.append({"name": name, "aliases": list(entry.aliases),
                     "params": sum(p.numel() for p in model.parameters()),
                     "assignment": entry.assignment, "description": entry.description,
                     "recipe_params": _recipe_params(name, entry.aliases)})
    return rows


def _recipe_params(name: str, aliases) -> dict[str, int]:
    """``{recipe: params}`` for each bundled recipe that builds ``name`` with other
    ``model_args`` than its defaults (s9_dilated's recipe widens it): what training builds."""
    out = {}
    for recipe, path in bundled_recipes().items():
        try:
            r = load_recipe(str(path))
        except CifarctlError:
            continue
        if r.model in (name, *aliases) and r.model_args:
            with torch.device("meta"):
                out[recipe] = sum(p.numel() for p in registry.create_model(name, **r.model_args).parameters())
    return out
