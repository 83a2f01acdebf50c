"""Recipes: one validated schema for everything a training run needs.

Precedence, in one place (``load_recipe``): schema defaults < recipe file < ``--set``.
Every problem is collected and reported at once, each naming the file, the key path and,
for an unknown key, the closest valid key. Only ``yaml.safe_load`` is ever used.

The schema is documented field by field in the Field descriptions below; ``cifarctl
recipes --schema`` prints it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from cifarctl.errors import RecipeError, UsageError, did_you_mean

TTA_MODES = ("none", "flip", "flip_translate")  # test-time augmentations: cifarctl.tta

SCHEMA_VERSION = 1

# Per-channel statistics of the CIFAR-10 train split (the original data set).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
        description="'cifar10' (download), 'synthetic', or a local path; --data and "
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
    train_subset: int | None = Field(None, gt=0, description="Use this many train images (class-balanced).")
    test_subset: int | None = Field(None, gt=0, description="Use this many test images (class-balanced).")
    workers: int = Field(2, ge=0, description="DataLoader workers for the albumentations backend.")


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


class Target(_Strict):
    min_test_acc: float | None = Field(None, ge=0, le=100, description="Best test accuracy (%) to reach.")
    max_params: int | None = Field(None, gt=0, description="Parameter budget of the assignment.")
    max_epochs: int | None = Field(None, gt=0, description="Epoch budget of the assignment.")


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
    seed: int = Field(1, ge=0, description="Seed of every random number generator.")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="'auto' = bf16 autocast on CUDA, fp32 on CPU."
    )
    channels_last: bool = Field(True, description="Use channels_last memory format on CUDA.")
    compile: bool = Field(False, description="torch.compile the model.")
    sync_bn: bool = Field(False, description="Synchronise BatchNorm across ranks under torchrun.")
    lookahead: Lookahead | None = Field(None, description="Lookahead averaging of the weights (airbench94); "
                                        "null = off.")
    eval_tta: Literal[TTA_MODES] = Field(
        "none", description="Test-time augmentation of the per-epoch test accuracy and of `cifarctl "
        "eval`: none; flip (mean with the mirror image); flip_translate (airbench94: mirror x "
        "{as is, 1 px up-left, 1 px down-right}, weighted 1/2, 1/4, 1/4).")
    target: Target = Field(default_factory=Target)

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


# Sections chosen by their `name`, with the schema's default choice.
_TAGGED = {"optimizer": "sgd", "scheduler": "none", "loss": "cross_entropy"}


# -------------------------------------------------------------------- locations
def bundled_dir() -> Path:
    """The folder of bundled recipes: inside the wheel, or ``recipes/`` in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "_recipes"
    if packaged.is_dir():
        return packaged
    return here.parent / "recipes"


def bundled_recipes() -> dict[str, Path]:
    """Bundled recipe names -> paths."""
    d = bundled_dir()
    return {p.stem: p for p in sorted(d.glob("*.yaml"))} if d.is_dir() else {}


def is_recipe_ref(ref: str) -> bool:
    """True for a path ending in .yaml/.yml or the name of a bundled recipe."""
    return ref.endswith((".yaml", ".yml")) or ref in bundled_recipes()


def resolve_recipe_path(ref: str) -> Path:
    """A recipe file from a path or a bundled recipe name."""
    p = Path(ref)
    if p.is_file():
        return p
    if ref.endswith((".yaml", ".yml")) or os.sep in ref:
        raise UsageError(f"recipe file {ref} does not exist")
    bundled = bundled_recipes()
    if ref in bundled:
        return bundled[ref]
    raise UsageError(
        f"unknown recipe {ref!r}{did_you_mean(ref, bundled)}; `cifarctl recipes` lists the bundled ones"
    )


# ------------------------------------------------------------------------ loading
def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if isinstance(exc, yaml.constructor.ConstructorError):
        problem = f"{problem} (only plain YAML is allowed: no python tags)"
    return f"{where}{problem}"


def parse_override(item: str) -> tuple[list[str], Any]:
    """``'data.batch_size=256'`` -> (['data', 'batch_size'], 256); the value is YAML."""
    if "=" not in item:
        raise UsageError(f"--set {item!r}: expected key.path=value (for example data.batch_size=256)")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise UsageError(f"--set {item!r}: empty key in {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UsageError(f"--set {item!r}: value is not valid YAML ({_yaml_problem(exc)})") from None
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


def _format_errors(err: ValidationError, data: dict[str, Any]) -> list[str]:
    problems = []
    for e in err.errors():
        loc = list(e["loc"])
        # Drop the discriminator tag pydantic inserts (scheduler.onecycle.max_lr).
        if len(loc) >= 2 and loc[0] in _TAGGED and isinstance(data.get(loc[0]), dict):
            if loc[1] == data[loc[0]].get("name"):
                loc.pop(1)
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
            shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
            problems.append(f"{path}: {e['msg'].rstrip('.')}{shown}")
    return problems


def _semantic_problems(recipe: Recipe) -> list[str]:
    """Checks that need more than types: model name, augmentations, sizes."""
    from cifarctl.registry import is_model, list_models

    problems = []
    if not is_model(recipe.model):
        problems.append(f"model: unknown model {recipe.model!r}{did_you_mean(recipe.model, list_models())}")
    from cifarctl.augment_check import check_steps  # no torch: validation stays fast

    for where, message in check_steps(recipe.data.augment):
        problems.append(f"data.augment{where}: {message}")
    sub = recipe.data.train_subset
    if sub is not None and recipe.data.batch_size > sub:
        problems.append(
            f"data.batch_size: {recipe.data.batch_size} is larger than data.train_subset ({sub})"
        )
    if isinstance(recipe.scheduler, MultiStep) and sorted(recipe.scheduler.milestones) != recipe.scheduler.milestones:
        problems.append("scheduler.milestones: must be increasing")
    return problems


def validate_dict(raw: Any, source: str) -> Recipe:
    """Validate a recipe mapping; raise RecipeError listing every problem."""
    if raw is None:
        raise RecipeError(source, ["the recipe is empty (expected a mapping with at least name, model, epochs)"])
    if not isinstance(raw, dict):
        raise RecipeError(source, [f"expected a mapping at the top level, got {type(raw).__name__}"])
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
    from cifarctl.augment_check import check_steps
    from cifarctl.registry import is_model, list_models

    problems = []
    model = raw.get("model")
    if isinstance(model, str) and not is_model(model):
        problems.append(f"model: unknown model {model!r}{did_you_mean(model, list_models())}")
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    augment = data.get("augment")
    if isinstance(augment, list):
        problems += [f"data.augment{where}: {message}" for where, message in check_steps(augment)]
    batch, sub = data.get("batch_size"), data.get("train_subset")
    if isinstance(batch, int) and isinstance(sub, int) and 0 < sub < batch:
        problems.append(f"data.batch_size: {batch} is larger than data.train_subset ({sub})")
    return problems


def read_yaml(path: Path) -> Any:
    """safe_load a recipe file; syntax errors become a RecipeError with line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read recipe {path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(str(path), [_yaml_problem(exc)]) from None


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


def default_recipe_for_model(model: str) -> Recipe:
    """The bundled recipe that trains ``model``, or a plain SGD recipe for it."""
    from cifarctl.registry import resolve_name

    canonical = resolve_name(model)
    for path in bundled_recipes().values():
        raw = read_yaml(path)
        if isinstance(raw, dict) and raw.get("model") in (model, canonical):
            return validate_dict(raw, str(path))
    return validate_dict({"name": canonical, "model": canonical, "epochs": 20}, f"default recipe for {canonical}")
