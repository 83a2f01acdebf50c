"""Recipes: one validated schema for everything a training run needs.

Precedence, in one place (``load_recipe``): schema defaults < recipe file < ``--set``.
Every problem is collected and reported at once, each naming the file, the key path and,
for an unknown key, the closest valid key. YAML is only read through the bounded safe
loader of :mod:`cifarctl.yamlsafe` (no tags, bounded aliases and depth, no duplicate keys).

The schema is documented field by field in the Field descriptions below; ``cifarctl
recipes --schema`` prints it.

Size (~800 lines, over the ~500 this project aims at): the schema's sections are ~60 %
of it, and they, the loader and the error formatting share the private validators and
the key-path wording; split in two, each half would import the other.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (BaseModel, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from cifarctl import CIFAR_MEAN, CIFAR_STD, yamlsafe
from cifarctl.bundled import bundled_dir, bundled_recipes  # noqa: F401  (re-exported)
from cifarctl.errors import RecipeError, UsageError, did_you_mean
from cifarctl.fsutil import name_problem
from cifarctl.strict import NOT_A_NUMBER, NotANumber, StrictModel  # noqa: F401  (re-exported)

TTA_MODES = ("none", "flip", "flip_translate")  # test-time augmentations: cifarctl.training.evaluation

SCHEMA_VERSION = 1
MAX_SEED = 2**64 - 1  # torch.manual_seed's limit (a larger seed overflows its unsigned 64 bits)


_Strict = StrictModel


# --------------------------------------------------------------------------- data
class Normalize(_Strict):
    mean: tuple[float, float, float] = Field(CIFAR_MEAN, description="Per-channel mean in [0, 1].")
    std: tuple[
        Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]
    ] = Field(CIFAR_STD, description="Per-channel standard deviation in [0, 1].")


AugmentStep = dict[str, Union[dict[str, Any], None]]


class Data(_Strict):
    source: str | None = Field(
        None,
        description="'cifar10' or 'cifar100' (download), 'synthetic', or a local path; --data and "
        "CIFARCTL_DATA override it.",
    )
    batch_size: int = Field(128, gt=0, description="Training batch size (images).")
    test_batch_size: int = Field(1000, gt=0, description="Evaluation batch size (images).")
    augment: list[AugmentStep] = Field(
        default_factory=list,
        description="Albumentations 2.x transforms, in order: a list of {Name: {arg: value}}.",
    )
    augment_backend: Literal["auto", "device", "albumentations"] = Field(
        "auto",
        description="'device' compiles the steps into batched tensor ops on the training "
        "device; 'albumentations' runs them per image in DataLoader workers; 'auto' uses the "
        "device when every step compiles.",
    )
    normalize: Normalize = Field(default_factory=Normalize)
    image_size: int = Field(32, ge=8, le=512, description="Side in pixels of the square images the model sees: "
                            "an image folder's images are resized to it (shorter side, then the centre crop); "
                            "CIFAR sources are 32.")
    label_kind: Literal["fine", "coarse"] = Field(
        "fine", description="CIFAR-100's labels: 'fine' (100 classes) or 'coarse' (its 20 superclasses).")
    train_subset: int | None = Field(None, gt=0, description="Use this many train images (class-balanced).")
    test_subset: int | None = Field(None, gt=0, description="Use this many test images (class-balanced).")
    val_split: int | None = Field(
        None, ge=10, description="Hold out this many train images (class-balanced, drawn with the seed) as a "
        "validation split: best.pt, ReduceLROnPlateau and the reported best epoch are chosen on it, and the "
        "test split is evaluated every epoch and reported, never selected on. null = no validation split: "
        "the best epoch is chosen on the test split, as the assignments' seeds report theirs.")
    workers: int = Field(2, ge=0, le=32, description="DataLoader workers for the albumentations backend "
                         "(at most 32: each is a process, and past one per core they only add memory).")


# ---------------------------------------------------------------------- optimizer
class SGD(_Strict):
    name: Literal["sgd"]
    lr: float = Field(0.01, gt=0, description="Learning rate.")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)
    norm_lr_scale: float = Field(
        1.0, gt=0,
        description="Multiplies the learning rate of normalization-layer parameters (BatchNorm/"
        "GroupNorm/LayerNorm weights and biases) and divides their weight_decay, so their decay "
        "per step is unchanged (airbench's bias_scaler); 1 = one parameter group.",
    )


class Adam(_Strict):
    name: Literal["adam"]
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class AdamW(_Strict):
    name: Literal["adamw"]
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.01, ge=0)


Optimizer = Annotated[Union[SGD, Adam, AdamW], Field(discriminator="name")]


# ---------------------------------------------------------------------- scheduler
class LRFind(_Strict):
    start_lr: float = Field(1e-7, gt=0)
    end_lr: float = Field(10.0, gt=0)
    num_iter: int = Field(100, ge=5)
    step_mode: Literal["exp", "linear"] = "exp"
    fallback_max_lr: float | None = Field(
        None, gt=0, description="max_lr to train with (and a warning) when the range test is "
        "inconclusive or its lr is out of range; unset = stop with an error instead.")
    accept_range: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] | None = Field(
        None, description="[low, high]: a chosen max_lr outside it counts as out of range; unset = "
        "any lr inside the sweep that was not clipped to its ends.")

    @model_validator(mode="after")
    def _ordered(self):
        if self.accept_range is not None and not self.accept_range[0] < self.accept_range[1]:
            raise ValueError("accept_range must be [low, high] with low < high")
        return self

    @model_validator(mode="after")
    def _increasing(self):
        if self.start_lr >= self.end_lr:
            raise ValueError(f"start_lr ({self.start_lr:g}) must be smaller than end_lr ({self.end_lr:g}): "
                             "the range test sweeps upwards")
        return self


def lr_find_problems(settings: dict[str, Any]) -> list[str]:
    """``--start-lr``/``--end-lr``/... problems of an LR range test's settings (finite,
    positive, start below end), checked before any sweep; [] when they are fine."""
    try:
        LRFind.model_validate(settings)
    except ValidationError as err:
        out = []
        for e in err.errors():
            where = f"--{str(e['loc'][0]).replace('_', '-')}: " if e["loc"] else ""
            msg = e["msg"].removeprefix("Value error, ").rstrip(".")
            if e["type"] == "finite_number":
                msg = "must be a finite number"
            out.append(f"{where}{msg} (got {e.get('input')!r})" if e["loc"] else msg)
        return out
    return []


class OneCycle(_Strict):
    name: Literal["onecycle"]
    max_lr: float | Literal["auto"] = Field(
        ..., description="Peak learning rate, or 'auto' to run the LR range test first."
    )
    pct_start: float = Field(0.3, gt=0, lt=1, description="Fraction of steps spent warming up.")
    div_factor: float = Field(25.0, gt=0, description="initial_lr = max_lr / div_factor.")
    final_div_factor: float = Field(1e4, gt=0, description="min_lr = initial_lr / final_div_factor.")
    anneal_strategy: Literal["cos", "linear"] = "cos"
    three_phase: bool = False
    lr_find: LRFind = Field(default_factory=LRFind, description="Settings of the range test for max_lr: auto.")

    @model_validator(mode="after")
    def _positive(self):
        if isinstance(self.max_lr, float) and self.max_lr <= 0:
            raise ValueError("max_lr must be > 0 or 'auto'")
        return self


class Step(_Strict):
    name: Literal["step"]
    step_size: int = Field(..., gt=0, description="Epochs between decays.")
    gamma: float = Field(0.1, gt=0)


class MultiStep(_Strict):
    name: Literal["multistep"]
    milestones: list[Annotated[int, Field(gt=0)]]
    gamma: float = Field(0.1, gt=0)


class Cosine(_Strict):
    name: Literal["cosine"]
    t_max: int | None = Field(None, gt=0, description="Epochs of the cosine; default: epochs.")
    eta_min: float = Field(0.0, ge=0)


class Plateau(_Strict):
    name: Literal["plateau"]
    mode: Literal["min", "max"] = "min"
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(10, ge=0)
    threshold: float = Field(1e-4, ge=0)
    min_lr: float = Field(0.0, ge=0)


class NoScheduler(_Strict):
    name: Literal["none"]


class LinearWarmupDecay(_Strict):
    """airbench94's schedule, stepped per batch; the peak is ``optimizer.lr``."""

    name: Literal["linear_warmup_decay"]
    warmup_pct: float = Field(0.23, ge=0, lt=1, description="Fraction of all steps spent warming up.")
    start_factor: float = Field(0.2, gt=0, description="lr at the first step = start_factor x optimizer.lr.")
    end_factor: float = Field(0.07, ge=0, description="lr at the last step = end_factor x optimizer.lr.")


Scheduler = Annotated[
    Union[OneCycle, Step, MultiStep, Cosine, Plateau, NoScheduler, LinearWarmupDecay],
    Field(discriminator="name"),
]


# --------------------------------------------------------------------------- loss
class CrossEntropy(_Strict):
    name: Literal["cross_entropy"]
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class NLL(_Strict):
    name: Literal["nll"]


Loss = Annotated[Union[CrossEntropy, NLL], Field(discriminator="name")]


class Lookahead(_Strict):
    """airbench94's lookahead: every ``every_steps`` steps, slow <- lerp(slow, weights, 1 - d)
    and weights <- slow, with d = decay ** every_steps * (step / total_steps) ** ramp_power;
    after the last step the weights become the slow ones. Checkpoints hold the slow copy."""

    every_steps: int = Field(5, gt=0, description="Optimizer steps between two syncs.")
    decay: float = Field(0.95, ge=0, lt=1, description="Decay per step (a sync uses decay ** every_steps).")
    ramp_power: float = Field(3.0, ge=0, description="d grows as (step / total_steps) ** ramp_power.")


class Ema(_Strict):
    """An exponential moving average of the weights (torch's AveragedModel with
    get_ema_multi_avg_fn), evaluated each epoch beside the raw weights and saved with them;
    what selects best.pt and what eval, misclassified and export use."""

    decay: float = Field(0.999, ge=0, lt=1, description="ema <- decay * ema + (1 - decay) * weights, every step.")
    warmup_steps: int = Field(0, ge=0, description="Optimizer steps during which the average follows the "
                              "weights (a copy) before averaging starts.")


class EarlyStop(_Strict):
    """Stop when the monitored figure stops improving (on the validation split when there is
    one, else the test split; the averaged weights' with ema)."""

    monitor: Literal["acc", "loss"] = Field("acc", description="Accuracy or loss of the split that chooses best.pt.")
    mode: Literal["max", "min"] | None = Field(None, description="max or min; null: max for acc, min for loss.")
    patience: int = Field(5, gt=0, description="Epochs without improvement before the run stops.")
    min_delta: float = Field(0.0, ge=0, description="The smallest change that counts as an improvement "
                             "(percentage points for acc).")


class Target(_Strict):
    min_test_acc: float | None = Field(None, ge=0, le=100, description="Best test accuracy (%) to reach.")
    max_params: int | None = Field(None, gt=0, description="Parameter budget of the assignment.")
    max_epochs: int | None = Field(None, gt=0, description="Epoch budget of the assignment.")


class Reference(_Strict):
    acc: float = Field(..., ge=0, le=100, description="Test accuracy (%) of the best public submission found.")
    source: str = Field(..., description="Where it comes from (a repository or page).")


class Rules(_Strict):
    """What the assignment demands (its parameter and epoch budgets are in target:)."""

    assignment: str | None = Field(None, description="The assignment these rules are, e.g. 'ERA V1 S9'.")
    min_test_acc: float | None = Field(None, ge=0, le=100, description="The assignment's own accuracy threshold (%), "
                                       "beside the seed's figure in target.min_test_acc.")
    min_rf: int | None = Field(None, gt=0, description="Smallest final receptive field (pixels).")
    forbid: list[str] = Field(default_factory=list, description="Layer kinds the model must not have "
                              "(torch class names, e.g. MaxPool2d).")
    require: list[Literal["depthwise_separable", "dilated_conv", "gap"]] = Field(
        default_factory=list, description="Layer kinds the model must have: depthwise_separable (a conv with "
        "groups = in-channels followed by a 1x1), dilated_conv, gap (global average pooling).")
    augment: list[str | dict[str, dict[str, Any]]] = Field(
        default_factory=list, description="Augmentations data.augment must hold: a name (A|B: either), or "
        "{Name: {arg: value}} for a step whose arguments must have those values (e.g. CoarseDropout's hole size).")
    layer_pattern: str | None = Field(None, description="The layer sequence, e.g. 'C1 C2 c3 P1 ... GAP c10' "
                                      "(C 3x3 conv, c 1x1 conv, P max-pool, GAP global average pooling; "
                                      "numbers are ignored).")
    optimizer: Literal["sgd", "adam", "adamw"] | None = Field(None, description="The optimizer required.")
    scheduler: str | None = Field(None, description="The scheduler required (e.g. onecycle).")
    peak_epoch: float | None = Field(None, gt=0, description="OneCycle's peak epoch (pct_start x epochs).")
    batch_size: int | None = Field(None, gt=0, description="The batch size required.")
    misclassified_grid: tuple[Annotated[int, Field(gt=0, le=10)], Annotated[int, Field(gt=0, le=10)]] | None = Field(
        None, description="The misclassified images the assignment asks for, as [columns, rows] (S8: [5, 2]): "
        "what `report` shows unless --n is given.")
    best_public: Reference | None = Field(None, description="The best public submission's accuracy and source.")

    @field_validator("augment")
    @classmethod
    def _one_step_each(cls, v: list) -> list:
        for item in v:
            if isinstance(item, dict) and len(item) != 1:
                raise ValueError(f"each entry is a name or {{Name: {{arg: value}}}}, got {len(item)} names in one")
        return v


# ------------------------------------------------------------------------- recipe
class Recipe(_Strict):
    schema_version: int = Field(SCHEMA_VERSION, ge=1, description="Recipe schema version.")
    name: str = Field(..., min_length=1, description="Recipe name; run folders are named after it.")
    description: str = ""
    assignment: str = Field("", description="The course assignment it reproduces (e.g. S8).")
    model: str = Field(..., min_length=1, description="A registered model name (`cifarctl models`).")
    model_args: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the model.")
    data: Data = Field(default_factory=Data)
    optimizer: Optimizer = Field(default_factory=lambda: SGD(name="sgd"))
    scheduler: Scheduler = Field(default_factory=lambda: NoScheduler(name="none"))
    loss: Loss = Field(default_factory=lambda: CrossEntropy(name="cross_entropy"))
    epochs: int = Field(..., gt=0, description="Training epochs.")
    seed: int = Field(1, ge=0, le=MAX_SEED, description="Seed of every random number generator (0 to 2**64 - 1).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="'auto' = bf16 autocast on CUDA GPUs with bf16 in hardware, fp16 with a GradScaler "
        "on the others (T4, V100), fp32 on the CPU (bf16 autocast on an AVX2-only "
        "CPU made a step 6-8x slower: benchmarks/results/cpu-speed-cpu.md)."
    )
    channels_last: bool = Field(
        True, description="Use the channels_last (NHWC) memory format for the model and its batches, on CUDA "
        "and on the CPU (on a 2-core CPU it made a training step 1.04-1.30x faster for the s6, s8 and s9 "
        "nets: benchmarks/results/cpu-speed-cpu.md); not on CUDA for GroupNorm nets, whose CUDA kernel "
        "copies NHWC inputs to NCHW.")
    compile: bool = Field(
        False, description="torch.compile the model. Off by default: on a 2-core CPU it cost 33-45 s of "
        "compilation and made a step 0.8-1.0x as fast for s8_bn and s9_dilated (only s6_dilated with "
        "channels_last gained, 1.08x over eager channels_last); not measured on a GPU yet.")
    deterministic: bool = Field(
        False, description="Deterministic kernels on CUDA (torch.use_deterministic_algorithms, cuDNN "
        "deterministic, no cuDNN autotuning): the same recipe and seed give identical metrics and a resumed "
        "run continues bit for bit, at some cost in speed. Off: cuDNN picks the fastest kernels and runs "
        "agree only to rounding. CPU runs are deterministic either way.")
    tensorboard: bool = Field(
        True, description="Write TensorBoard event files into the run folder's tensorboard/ (per-epoch "
        "metrics, the loss and lr at display points, the recipe as hparams) when the tensorboard package is "
        "installed (pip install -e \".[logs]\"); false: none. metrics.jsonl and metrics.csv are written either way.")
    sync_bn: bool = Field(False, description="Synchronise BatchNorm across ranks under torchrun (CUDA only: "
                          "torch's SyncBatchNorm has no CPU kernel).")
    lookahead: Lookahead | None = Field(None, description="Lookahead averaging of the weights (airbench94); "
                                        "null = off.")
    ema: Ema | None = Field(None, description="Exponential moving average of the weights; null = off.")
    early_stop: EarlyStop | None = Field(None, description="Stop when the chosen figure stops improving; "
                                         "null = off.")
    eval_tta: Literal[TTA_MODES] = Field(
        "none", description="Test-time augmentation of the per-epoch test accuracy and of `cifarctl "
        "eval`: none; flip (mean with the mirror image); flip_translate (airbench94: mirror x "
        "{as is, 1 px up-left, 1 px down-right}, weighted 1/2, 1/4, 1/4).")
    target: Target = Field(default_factory=Target)
    rules: Rules | None = Field(None, description="The assignment's rules, checked by `summary` and before "
                                "`train` (null: none).")

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        bad = name_problem(value)
        if bad:
            raise ValueError(f"{bad}: the run folder is named after it, so it must be one plain folder "
                             "name (letters, digits, '-', '_', '.')")
        return value

    _origin: str = PrivateAttr("")  # set by validate_dict: the file (and --set options) it came from

    @property
    def origin(self) -> str:
        """Where the recipe was read from, for errors found later (e.g. once the data is loaded)."""
        return self._origin or f"recipe {self.name}"

    def __eq__(self, other: object) -> bool:  # the same values, wherever they were read from
        if not isinstance(other, Recipe):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def with_value(self, key: str, value: Any) -> Recipe:
        """A copy with one dotted key set (``"scheduler.max_lr"``, ``"model_args.num_classes"``,
        ``"data.source"``), not validated again: for a value the program has checked already.
        :meth:`replace` is the validated way, for values a user gave."""
        section, field_name = key.split(".")
        part = getattr(self, section)
        new = {**part, field_name: value} if isinstance(part, dict) else part.model_copy(update={field_name: value})
        return self.model_copy(update={section: new})

    def replace(self, changes: Mapping[str, Any], why: str = "", *,
                overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
        """A validated copy with each dotted key set: ``recipe.replace({"data.source": "synthetic"})``,
        then the ``--set key.path=value`` ``overrides``.

        A key whose parent is missing (or not a mapping) gets a new mapping; the copy's
        origin says ``why`` it differs, for errors found in it later.
        """
        raw = self.to_dict()
        for key, value in changes.items():
            node = raw
            *parents, last = key.split(".")
            for part in parents:
                if not isinstance(node.get(part), dict):
                    node[part] = {}
                node = node[part]
            node[last] = value
        why = "; ".join(w for w in (why, f"with --set {' '.join(overrides)}" if overrides else "") if w)
        return validate_dict(apply_overrides(raw, list(overrides)), f"{self.origin} ({why})" if why else self.origin)


# Sections chosen by their `name`, with the schema's default choice.
_TAGGED = {"optimizer": "sgd", "scheduler": "none", "loss": "cross_entropy"}


# -------------------------------------------------------------------- locations
def is_recipe_ref(ref: str) -> bool:
    """True for a path ending in .yaml/.yml or holding a '/', or the name of a bundled recipe
    (a path such as ``/dev/null`` or a folder is then reported as such, not as an unknown name)."""
    return ref.endswith((".yaml", ".yml")) or os.sep in ref or ref in bundled_recipes()


def resolve_recipe_path(ref: str) -> Path:
    """A recipe file from a path or a bundled recipe name."""
    p = Path(ref)
    if p.is_file():
        return p
    if os.path.lexists(p):  # a folder, a device (/dev/null), a pipe, a dangling link
        raise UsageError(f"recipe file {ref} {yamlsafe.file_problem(p) or 'is not a regular file'}")
    bundled = bundled_recipes()
    if ref.endswith((".yaml", ".yml")) or os.sep in ref:
        stem = p.name.rsplit(".", 1)[0]
        hint = f"; the bundled recipe is named without .yaml: {stem}" if stem in bundled else ""
        raise UsageError(f"recipe file {ref} does not exist{hint}")
    if ref in bundled:
        return bundled[ref]
    raise UsageError(
        f"unknown recipe {ref!r}{did_you_mean(ref, bundled)}; `cifarctl recipes` lists the bundled ones"
    )


# ------------------------------------------------------------------------ loading
_yaml_problem = yamlsafe.problem
MAX_KEY_PARTS = 16  # --set a.b.c...: a recipe is 6 levels deep


def parse_override(item: str) -> tuple[list[str], Any]:
    """``'data.batch_size=256'`` -> (['data', 'batch_size'], 256); the value is YAML."""
    if "=" not in item:
        raise UsageError(f"--set {item!r}: expected key.path=value (for example data.batch_size=256)")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UsageError(f"--set {item!r}: empty key in {key!r}")
    if key.count(".") >= MAX_KEY_PARTS:
        raise UsageError(f"--set {key[:60]}...: more than {MAX_KEY_PARTS} levels of keys (no recipe key is)")
    try:
        value = yamlsafe.load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        shown = item if len(item) <= 80 else item[:77] + "..."
        raise UsageError(f"--set {shown!r}: value is not valid YAML ({_yaml_problem(exc)})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Set each ``key.path=value`` into the nested dict (lists take integer indices)."""
    for item in overrides:
        path, value = parse_override(item)
        if path[0] in _TAGGED and len(path) > 1 and not isinstance(raw.get(path[0]), dict):
            # --set optimizer.lr=0.1 on a recipe without an optimizer section tunes the default one.
            raw[path[0]] = {"name": _TAGGED[path[0]]}
        node: Any = raw
        for i, part in enumerate(path[:-1]):
            if isinstance(node, list):
                try:
                    node = node[int(part)]
                    continue
                except (ValueError, IndexError):
                    raise UsageError(f"--set {item!r}: {'.'.join(path[: i + 1])} is not a list index") from None
            nxt = node.get(part)
            if not isinstance(nxt, (dict, list)):
                nxt = {}
                node[part] = nxt
            node = nxt
        last = path[-1]
        if isinstance(node, list):
            try:
                node[int(last)] = value
            except (ValueError, IndexError):
                raise UsageError(f"--set {item!r}: {last!r} is not a valid list index") from None
        else:
            node[last] = value
    return raw


def _model_at(loc: tuple, data: dict[str, Any]) -> type[BaseModel] | None:
    """The schema class that owns the key at ``loc`` (for close-match suggestions)."""
    cls: type[BaseModel] = Recipe
    node: Any = data
    for part in loc[:-1]:
        if isinstance(part, int) or cls is None:
            return None
        field = cls.model_fields.get(part)
        if field is None:
            return None
        node = node.get(part, {}) if isinstance(node, dict) else {}
        ann = field.annotation
        sub = None
        args = getattr(ann, "__args__", ()) or ()
        for cand in (ann, *args):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                if "name" in cand.model_fields and isinstance(node, dict):
                    lit = cand.model_fields["name"].annotation
                    if node.get("name") not in getattr(lit, "__args__", ()):
                        continue
                sub = cand
                break
        cls = sub
    return cls


def _union_member_tag(loc: list, data: dict[str, Any]) -> bool:
    """Whether ``loc`` ends with the member tag pydantic appends to an error inside a union
    (``scheduler.max_lr`` + ``float`` of ``float | 'auto'``): read from the schema, not the text."""
    import types
    import typing

    if len(loc) < 2 or not isinstance(loc[-1], str):
        return False
    owner = _model_at(tuple(loc[:-1]), data)
    field = owner.model_fields.get(loc[-2]) if owner is not None and isinstance(loc[-2], str) else None
    if field is None:
        return False
    ann = field.annotation
    if typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    if typing.get_origin(ann) not in (typing.Union, types.UnionType):
        return False
    members = typing.get_args(ann)
    return not any(isinstance(m, type) and issubclass(m, BaseModel) and loc[-1] in m.model_fields for m in members)


def _format_errors(err: ValidationError, data: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    union_msgs: dict[str, tuple[list[str], str, int]] = {}
    for e in err.errors():
        loc = list(e["loc"])
        # Drop the discriminator tag pydantic inserts (scheduler.onecycle.max_lr).
        if len(loc) >= 2 and loc[0] in _TAGGED and isinstance(data.get(loc[0]), dict):
            if loc[1] == data[loc[0]].get("name"):
                loc.pop(1)
        branch = e["type"] not in ("extra_forbidden", "missing") and _union_member_tag(loc, data)
        if branch:  # one member of a union (float | 'auto'): merged into one line below
            loc.pop()
        path = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
        if e["type"] == "extra_forbidden":
            owner = _model_at(tuple(loc), data)
            hint = did_you_mean(str(loc[-1]), owner.model_fields) if owner else ""
            problems.append(f"{path}: unknown key{hint}")
        elif e["type"] == "union_tag_invalid":
            choices = e.get("ctx", {}).get("expected_tags", "")
            problems.append(f"{path}.name: unknown value {e['input'].get('name')!r} (expected one of {choices})"
                            if isinstance(e.get("input"), dict) else f"{path}: {e['msg']}")
        elif e["type"] == "union_tag_not_found":
            problems.append(f"{path}.name: missing (say which one, e.g. name: sgd)")
        elif e["type"] == "missing":
            problems.append(f"{path}: required key is missing")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, (dict, list)) else f" (got {_short(got)})"
            msg = e["msg"].removeprefix("Value error, ").rstrip(".")
            if isinstance(got, NotANumber):
                msg = NOT_A_NUMBER
            elif e["type"] == "finite_number":
                msg = "must be a finite number (not nan or inf; floats beyond 1.8e308 are inf)"
            key = path or "(top level)"
            if key in union_msgs and branch:
                if msg not in union_msgs[key][0]:
                    union_msgs[key][0].append(msg)
                continue
            if branch:
                union_msgs[key] = ([msg], shown, len(problems))
            problems.append(f"{key}: {msg}{shown}")
    for key, (msgs, shown, at) in union_msgs.items():
        problems[at] = f"{key}: {' or '.join(msgs)}{shown}"
    return problems


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _semantic_problems(recipe: Recipe) -> list[str]:
    """Checks that need more than types: model name, augmentations, sizes."""
    from cifarctl.registry import is_model, list_models

    problems = []
    if not is_model(recipe.model):
        problems.append(f"model: unknown model {recipe.model!r}{did_you_mean(recipe.model, list_models())}")
    else:
        from cifarctl.registry import check_model_args

        problems += check_model_args(recipe.model, recipe.model_args)
    if recipe.rules is not None and recipe.rules.forbid:
        kinds = _layer_kinds()
        problems += [f"rules.forbid[{i}]: unknown layer kind {k!r}{did_you_mean(k, kinds)} (a torch.nn class "
                     "name, e.g. MaxPool2d)" for i, k in enumerate(recipe.rules.forbid) if k not in kinds]
    from cifarctl.augment.spec import augment_problems  # no torch: validation stays fast

    for where, message in augment_problems(recipe.data.augment, recipe.data.image_size):
        problems.append(f"data.augment{where}: {message}")
    sub = recipe.data.train_subset
    if sub is not None and recipe.data.batch_size > sub:
        problems.append(
            f"data.batch_size: {recipe.data.batch_size} is larger than data.train_subset ({sub})"
        )
    if isinstance(recipe.scheduler, MultiStep) and sorted(recipe.scheduler.milestones) != recipe.scheduler.milestones:
        problems.append("scheduler.milestones: must be increasing")
    return problems


def _layer_kinds() -> set[str]:
    """The class names of every layer kind loaded (torch.nn's and the model families'): what
    ``rules.forbid`` may name."""
    import torch.nn

    seen, todo = set(), [torch.nn.Module]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
    return {cls.__name__ for cls in seen}


def validate_dict(raw: Any, source: str) -> Recipe:
    """Validate a recipe mapping; raise RecipeError listing every problem."""
    if raw is None:
        raise RecipeError(source, ["the recipe is empty (expected a mapping with at least name, model, epochs)"])
    if not isinstance(raw, dict):
        raise RecipeError(source, [f"expected a mapping at the top level, got {type(raw).__name__}"])
    too_big = yamlsafe.check_tree(raw)
    if too_big:  # a crafted stored recipe (checkpoint) or an --set alias bomb: refuse before walking it
        raise RecipeError(source, [f"the recipe {too_big}: not a recipe"])
    version = raw.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise RecipeError(
            source,
            [f"schema_version: {version} is newer than this cifarctl understands ({SCHEMA_VERSION}); upgrade cifarctl"],
        )
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as err:
        # Also report the semantic problems we can still see (every error at once).
        raise RecipeError(source, _format_errors(err, raw) + _raw_semantic_problems(raw)) from None
    problems = _semantic_problems(recipe)
    if problems:
        raise RecipeError(source, problems)
    recipe._origin = source
    return recipe


def _raw_semantic_problems(raw: dict[str, Any]) -> list[str]:
    """:func:`_semantic_problems` on a mapping that failed validation: model, augmentations
    and batch size, where they are of the right type to be checked."""
    from cifarctl.augment.spec import augment_problems
    from cifarctl.registry import is_model, list_models

    problems = []
    model = raw.get("model")
    if isinstance(model, str) and not is_model(model):
        problems.append(f"model: unknown model {model!r}{did_you_mean(model, list_models())}")
    elif isinstance(model, str) and isinstance(raw.get("model_args"), dict):
        from cifarctl.registry import check_model_args

        problems += check_model_args(model, raw["model_args"])
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    augment = data.get("augment")
    if isinstance(augment, list):
        size = data.get("image_size") if isinstance(data.get("image_size"), int) and \
            not isinstance(data.get("image_size"), bool) and 8 <= data.get("image_size") <= 512 else 32
        problems += [f"data.augment{where}: {message}" for where, message in augment_problems(augment, size)]
    batch, sub = data.get("batch_size"), data.get("train_subset")
    if isinstance(batch, int) and isinstance(sub, int) and not isinstance(sub, bool) and 0 < sub < batch:
        problems.append(f"data.batch_size: {batch} is larger than data.train_subset ({sub})")
    return problems


def read_yaml(path: Path) -> Any:
    """Read a recipe file with the bounded loader (:mod:`cifarctl.yamlsafe`): syntax errors,
    alias bombs, deep nesting, duplicate keys, non-UTF-8 text, folders and devices are a
    RecipeError naming the file (with line and column where there is one)."""
    return yamlsafe.read_file(path)


def load_recipe(ref: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load, override and validate a recipe: schema defaults < file < ``--set`` overrides."""
    path = resolve_recipe_path(str(ref))
    raw = read_yaml(path)
    if overrides:
        if raw is None:
            raw = {}
        if isinstance(raw, dict):
            raw = apply_overrides(raw, list(overrides))
    source = str(path) + (" (with --set " + " ".join(overrides) + ")" if overrides else "")
    return validate_dict(raw, source)


def recipe_rows(recipes: Mapping[str, Recipe]) -> list[dict[str, Any]]:
    """One plain dict per recipe (name -> Recipe): what ``cifarctl recipes --json`` lists."""
    return [{"name": name, "assignment": r.assignment, "model": r.model, "epochs": r.epochs,
             "batch_size": r.data.batch_size, "optimizer": r.optimizer.name, "scheduler": r.scheduler.name,
             "target": r.target.model_dump(), "description": r.description} for name, r in recipes.items()]


def default_recipe_for_model(model: str) -> Recipe:
    """The bundled recipe that trains ``model``, or a plain SGD recipe for it."""
    from cifarctl.registry import resolve_name

    canonical = resolve_name(model)
    for path in bundled_recipes().values():
        raw = read_yaml(path)
        if isinstance(raw, dict) and raw.get("model") in (model, canonical):
            return validate_dict(raw, str(path))
    return validate_dict({"name": canonical, "model": canonical, "epochs": 20}, f"default recipe for {canonical}")


# ------------------------------------------------------------------------ target
def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return v


def reference(recipe: Recipe) -> dict:
    """The figures a run is read against (``train``'s last lines, ``report``): the seed's,
    the assignment's threshold and the best public submission's (with its source)."""
    rules = recipe.rules
    best = rules.best_public if rules else None
    return {"seed": recipe.target.min_test_acc, "assignment": rules.min_test_acc if rules else None,
            "best_public": best.acc if best else None, "best_public_source": best.source if best else None}


def assignment_threshold(recipe: Recipe | Mapping[str, Any] | None) -> float | None:
    """The assignment's accuracy threshold (``rules.min_test_acc``) of a recipe, or of a
    mapping read back from a run's recipe.yaml; None when it has none."""
    if isinstance(recipe, Recipe):
        return recipe.rules.min_test_acc if recipe.rules is not None else None
    rules = recipe.get("rules") if isinstance(recipe, Mapping) else None
    return _number(rules.get("min_test_acc")) if isinstance(rules, Mapping) else None


def target_verdict(target: Target | Mapping[str, Any] | None, *, best_acc: float | None, params: int | None,
                   epochs: int, assignment: float | None = None) -> dict:
    """The recipe's ``target`` checked: best test acc against the seed's figure
    (``target.min_test_acc``) and against the assignment's threshold (``assignment``, the
    rules' ``min_test_acc``), params (when known), epochs. PASS means every check: a run
    above the seed's figure but below the assignment's threshold fails.

    ``{"passed", "checks": [{"name", "target", "value", "passed", "text"}]}``; ``passed`` is
    True when there is nothing to check. ``target`` may be a mapping read back from a
    run's recipe.yaml (values that are not numbers are not checked).
    """
    if isinstance(target, Target):
        target = target.model_dump()
    get = (lambda k: _number(target.get(k))) if isinstance(target, Mapping) else (lambda k: None)
    checks = []
    shown = "n/a" if best_acc is None else f"{best_acc:.2f}%"
    for name, lo, whose in (("min_test_acc", get("min_test_acc"), "seed's figure"),
                            ("assignment_acc", _number(assignment), "assignment's threshold")):
        if lo is None:
            continue
        ok = best_acc is not None and best_acc >= lo
        checks.append({"name": name, "target": lo, "value": best_acc, "passed": ok,
                       "text": f"best test acc {shown} {'>=' if ok else '<'} {lo:.2f}% ({whose})"})
    most = get("max_params")
    if most is not None and params is not None:
        ok = params <= most
        checks.append({"name": "max_params", "target": most, "value": params, "passed": ok,
                       "text": f"params {params:,} {'<=' if ok else '>'} {most:,}"})
    most = get("max_epochs")
    if most is not None:
        ok = epochs <= most
        checks.append({"name": "max_epochs", "target": most, "value": epochs, "passed": ok,
                       "text": f"epochs {epochs} {'<=' if ok else '>'} {most}"})
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


# ------------------------------------------------------------------------ MODEL|RECIPE
@dataclass(frozen=True)
class Resolved:
    """What a ``MODEL|RECIPE`` argument named: a recipe, or a model (with default training settings)."""

    recipe: Recipe
    kind: Literal["recipe", "model"]
    ref: str                      # as given
    settings_from: str | None = None  # model: the bundled recipe whose training settings it has

    def describe(self, settings: bool = True) -> str:
        """Which was used, for a command's header: ``recipe s8_bn: model s8_bn, model_args {...}``
        or ``model resnet18 (registered arguments)``, with where the training settings
        come from when ``settings``."""
        r = self.recipe
        if self.kind == "recipe":
            name = r.name if self.ref == r.name else f"{r.name} ({self.ref})"
            return f"recipe {name}: model {r.model}, model_args {dict(r.model_args)}"
        if not settings:
            return f"model {r.model} (registered arguments)"
        where = f"training settings of recipe {self.settings_from}" if self.settings_from else \
            "default training settings"
        return f"model {r.model} (registered arguments; {where})"


def resolve_model_or_recipe(ref: str, overrides: list[str] | tuple[str, ...] = ()) -> Resolved:
    """One precedence for every ``MODEL|RECIPE`` argument (``summary``, ``lr-find``, ...):

    1. a ``.yaml``/``.yml`` path or the name of a bundled recipe: that recipe, which
       carries the model and its ``model_args`` (a name that is both, such as ``s8_bn``,
       is the recipe);
    2. a registered model name or alias: that model with its registered arguments, and
       the training settings of the bundled recipe that trains it (else the defaults).

    ``overrides`` (``--set key.path=value``) apply last, in both cases.
    """
    from cifarctl.registry import is_model, list_models, resolve_name

    if is_recipe_ref(ref):
        return Resolved(load_recipe(ref, tuple(overrides)), "recipe", ref)
    if is_model(ref):
        base = default_recipe_for_model(ref)
        recipe = base.replace({"model": resolve_name(ref), "model_args": {}}, f"for model {ref}",
                              overrides=overrides)
        bundled = base.name if base.name in bundled_recipes() else None
        return Resolved(recipe, "model", ref, bundled)
    known = list_models() + list(bundled_recipes())
    raise UsageError(f"unknown model or recipe {ref!r}{did_you_mean(ref, known)}; "
                     "`cifarctl models` and `cifarctl recipes` list them")


def dotted_keys(model: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """Every key a ``--set`` can name (``data.batch_size``, every branch of the optimizer,
    scheduler and loss unions); :data:`cifarctl.cli.complete.SET_KEYS` is this list, kept
    in the completion module so that a TAB imports no pydantic (a test checks they agree)."""
    import types
    import typing

    def sections(t) -> list[type[BaseModel]]:
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            return sections(typing.get_args(t)[0])
        if origin in (typing.Union, types.UnionType):
            return [m for a in typing.get_args(t) for m in sections(a)]
        return [t] if isinstance(t, type) and issubclass(t, BaseModel) else []

    keys: set[str] = set()
    for name, info in (model or Recipe).model_fields.items():
        keys.add(prefix + name)
        for sub in sections(info.annotation):
            keys.update(dotted_keys(sub, f"{prefix}{name}."))
    return sorted(keys)


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict as ``{"a.b.c": value}`` (the keys ``--set`` takes)."""
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}
