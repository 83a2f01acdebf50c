"""The recipe schema: one pydantic model per section, with the validators that need only
the section's own values (ranges, orders, the run name).

Every section is a :class:`cifarctl.strict.StrictModel` (unknown keys are errors, floats are
finite, a boolean is not a number); boolean fields are pydantic's ``StrictBool`` (a number or
a string such as ``yes`` is not a boolean). The schema is documented field by field in the
Field descriptions below; ``cifarctl recipes --schema`` prints it. Reading, ``--set`` and the
checks that need the model registry are in :mod:`cifarctl.recipe.load`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import Field, PrivateAttr, StrictBool, field_validator, model_validator

from cifarctl import CIFAR_MEAN, CIFAR_STD
from cifarctl.fsutil import name_problem
from cifarctl.strict import StrictModel

TTA_MODES = ("none", "flip", "flip_translate")  # test-time augmentations: cifarctl.training.evaluation

SCHEMA_VERSION = 1
MAX_SEED = 2**64 - 1  # torch.manual_seed's limit (a larger seed overflows its unsigned 64 bits)


# --------------------------------------------------------------------------- data
class Normalize(StrictModel):
    mean: tuple[float, float, float] = Field(CIFAR_MEAN, description="Per-channel mean in [0, 1].")
    std: tuple[
        Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]
    ] = Field(CIFAR_STD, description="Per-channel standard deviation in [0, 1].")


AugmentStep = dict[str, Union[dict[str, Any], None]]


class Data(StrictModel):
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
class SGD(StrictModel):
    name: Literal["sgd"]
    lr: float = Field(0.01, gt=0, description="Learning rate.")
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: StrictBool = False
    weight_decay: float = Field(0.0, ge=0)
    norm_lr_scale: float = Field(
        1.0, gt=0,
        description="Multiplies the learning rate of normalization-layer parameters (BatchNorm/"
        "GroupNorm/LayerNorm weights and biases) and divides their weight_decay, so their decay "
        "per step is unchanged (airbench's bias_scaler); 1 = one parameter group.",
    )


class Adam(StrictModel):
    name: Literal["adam"]
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.0, ge=0)


class AdamW(StrictModel):
    name: Literal["adamw"]
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.01, ge=0)


Optimizer = Annotated[Union[SGD, Adam, AdamW], Field(discriminator="name")]


# ---------------------------------------------------------------------- scheduler
class LRFind(StrictModel):
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



class OneCycle(StrictModel):
    name: Literal["onecycle"]
    max_lr: float | Literal["auto"] = Field(
        ..., description="Peak learning rate, or 'auto' to run the LR range test first."
    )
    pct_start: float = Field(0.3, gt=0, lt=1, description="Fraction of steps spent warming up.")
    div_factor: float = Field(25.0, gt=0, description="initial_lr = max_lr / div_factor.")
    final_div_factor: float = Field(1e4, gt=0, description="min_lr = initial_lr / final_div_factor.")
    anneal_strategy: Literal["cos", "linear"] = "cos"
    three_phase: StrictBool = False
    lr_find: LRFind = Field(default_factory=LRFind, description="Settings of the range test for max_lr: auto.")

    @model_validator(mode="after")
    def _positive(self):
        if isinstance(self.max_lr, float) and self.max_lr <= 0:
            raise ValueError("max_lr must be > 0 or 'auto'")
        return self


class Step(StrictModel):
    name: Literal["step"]
    step_size: int = Field(..., gt=0, description="Epochs between decays.")
    gamma: float = Field(0.1, gt=0)


class MultiStep(StrictModel):
    name: Literal["multistep"]
    milestones: list[Annotated[int, Field(gt=0)]]
    gamma: float = Field(0.1, gt=0)


class Cosine(StrictModel):
    name: Literal["cosine"]
    t_max: int | None = Field(None, gt=0, description="Epochs of the cosine; default: epochs.")
    eta_min: float = Field(0.0, ge=0)


class Plateau(StrictModel):
    name: Literal["plateau"]
    mode: Literal["min", "max"] = "min"
    factor: float = Field(0.1, gt=0, lt=1)
    patience: int = Field(10, ge=0)
    threshold: float = Field(1e-4, ge=0)
    min_lr: float = Field(0.0, ge=0)


class NoScheduler(StrictModel):
    name: Literal["none"]


class LinearWarmupDecay(StrictModel):
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
class CrossEntropy(StrictModel):
    name: Literal["cross_entropy"]
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class NLL(StrictModel):
    name: Literal["nll"]


Loss = Annotated[Union[CrossEntropy, NLL], Field(discriminator="name")]


class Lookahead(StrictModel):
    """airbench94's lookahead: every ``every_steps`` steps, slow <- lerp(slow, weights, 1 - d)
    and weights <- slow, with d = decay ** every_steps * (step / total_steps) ** ramp_power;
    after the last step the weights become the slow ones. Checkpoints hold the slow copy."""

    every_steps: int = Field(5, gt=0, description="Optimizer steps between two syncs.")
    decay: float = Field(0.95, ge=0, lt=1, description="Decay per step (a sync uses decay ** every_steps).")
    ramp_power: float = Field(3.0, ge=0, description="d grows as (step / total_steps) ** ramp_power.")


class Ema(StrictModel):
    """An exponential moving average of the weights (torch's AveragedModel with
    get_ema_multi_avg_fn), evaluated each epoch beside the raw weights and saved with them;
    what selects best.pt and what eval, misclassified and export use."""

    decay: float = Field(0.999, ge=0, lt=1, description="ema <- decay * ema + (1 - decay) * weights, every step.")
    warmup_steps: int = Field(0, ge=0, description="Optimizer steps during which the average follows the "
                              "weights (a copy) before averaging starts.")


class EarlyStop(StrictModel):
    """Stop when the monitored figure stops improving (on the validation split when there is
    one, else the test split; the averaged weights' with ema)."""

    monitor: Literal["acc", "loss"] = Field("acc", description="Accuracy or loss of the split that chooses best.pt.")
    mode: Literal["max", "min"] | None = Field(None, description="max or min; null: max for acc, min for loss.")
    patience: int = Field(5, gt=0, description="Epochs without improvement before the run stops.")
    min_delta: float = Field(0.0, ge=0, description="The smallest change that counts as an improvement "
                             "(percentage points for acc).")


class Target(StrictModel):
    min_test_acc: float | None = Field(None, ge=0, le=100, description="Best test accuracy (%) to reach.")
    max_params: int | None = Field(None, gt=0, description="Parameter budget of the assignment.")
    max_epochs: int | None = Field(None, gt=0, description="Epoch budget of the assignment.")


class Reference(StrictModel):
    acc: float = Field(..., ge=0, le=100, description="Test accuracy (%) of the best public submission found.")
    source: str = Field(..., description="Where it comes from (a repository or page).")


class Rules(StrictModel):
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
class Recipe(StrictModel):
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
        "on the others (T4, V100), fp32 on the CPU (bf16 autocast on an AVX2-only CPU made a step "
        "several times slower: docs/benchmarks.md)."
    )
    channels_last: StrictBool = Field(
        True, description="Use the channels_last (NHWC) memory format for the model and its batches, on CUDA "
        "and on the CPU (it made a CPU training step faster for the s6, s8 and s9 nets: "
        "docs/benchmarks.md); not on CUDA for GroupNorm nets, whose CUDA kernel "
        "copies NHWC inputs to NCHW.")
    compile: StrictBool = Field(
        False, description="torch.compile the model. Off by default: on the CPU its compilation cost more than it "
        "saved, and a compiled step of s8_bn or s9_dilated was no faster (docs/benchmarks.md); not "
        "measured on a GPU yet.")
    deterministic: StrictBool = Field(
        False, description="Deterministic kernels on CUDA (torch.use_deterministic_algorithms, cuDNN "
        "deterministic, no cuDNN autotuning): the same recipe and seed give identical metrics and a resumed "
        "run continues bit for bit, at some cost in speed. Off: cuDNN picks the fastest kernels and runs "
        "agree only to rounding. CPU runs are deterministic either way.")
    tensorboard: StrictBool = Field(
        True, description="Write TensorBoard event files into the run folder's tensorboard/ (per-epoch "
        "metrics, the loss and lr at display points, the recipe as hparams) when the tensorboard package is "
        "installed (pip install -e \".[logs]\"); false: none. metrics.jsonl and metrics.csv are written either way.")
    sync_bn: StrictBool = Field(False, description="Synchronise BatchNorm across ranks under torchrun (CUDA only: "
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
        from cifarctl.recipe.load import apply_overrides, validate_dict  # load imports this module

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

