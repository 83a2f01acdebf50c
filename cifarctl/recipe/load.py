"""Reading recipes: files and bundled names, ``--set`` overrides, validation with every
problem at once, and the ``MODEL|RECIPE`` arguments.

Precedence, in one place (:func:`load_recipe`): schema defaults < recipe file < ``--set``.
Every problem is collected and reported at once, each naming the file, the key path and,
for an unknown key, the closest valid key. YAML is only read through the bounded safe
loader of :mod:`cifarctl.yamlsafe` (no tags, bounded aliases and depth, no duplicate keys).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from cifarctl import yamlsafe
from cifarctl.augment.spec import augment_problems
from cifarctl.bundled import bundled_recipes
from cifarctl.errors import RecipeError, UsageError, did_you_mean
from cifarctl.recipe.schema import SCHEMA_VERSION, MultiStep, Recipe
from cifarctl.recipe.wording import format_errors, sections
from cifarctl.registry import check_model_args, is_model, list_models, resolve_name

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


# ---------------------------------------------------------------------- --set
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
        raise UsageError(f"--set {shown!r}: value is not valid YAML ({yamlsafe.problem(exc)})") from None
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



# ------------------------------------------------------------------------ loading
def semantic_problems(raw: Mapping[str, Any], recipe: Recipe | None = None) -> list[str]:
    """The checks that need more than types, on a recipe mapping: the model and its
    arguments, the augmentations (against the image size), the batch size against the train
    subset, each where its values have the types to be checked; with the validated
    ``recipe`` (``raw`` is then its dump), also ``rules.forbid``'s layer kinds and the order
    of the milestones. A mapping that failed validation gets the ones it still shows, so
    that every problem is reported at once."""
    problems = []
    model = raw.get("model")
    if isinstance(model, str) and not is_model(model):
        problems.append(f"model: unknown model {model!r}{did_you_mean(model, list_models())}")
    elif isinstance(model, str) and isinstance(raw.get("model_args"), dict):
        problems += check_model_args(model, raw["model_args"])
    if recipe is not None and recipe.rules is not None and recipe.rules.forbid:
        kinds = _layer_kinds()
        problems += [f"rules.forbid[{i}]: unknown layer kind {k!r}{did_you_mean(k, kinds)} (a torch.nn class "
                     "name, e.g. MaxPool2d)" for i, k in enumerate(recipe.rules.forbid) if k not in kinds]
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    if isinstance(data.get("augment"), list):
        size = data.get("image_size")
        size = size if isinstance(size, int) and not isinstance(size, bool) and 8 <= size <= 512 else 32
        problems += [f"data.augment{where}: {message}" for where, message in augment_problems(data["augment"], size)]
    batch, sub = data.get("batch_size"), data.get("train_subset")
    if isinstance(batch, int) and isinstance(sub, int) and not isinstance(sub, bool) and 0 < sub < batch:
        problems.append(f"data.batch_size: {batch} is larger than data.train_subset ({sub})")
    if recipe is not None and isinstance(recipe.scheduler, MultiStep) and \
            sorted(recipe.scheduler.milestones) != recipe.scheduler.milestones:
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
        raise RecipeError(source, format_errors(err, raw) + semantic_problems(raw)) from None
    problems = semantic_problems(recipe.model_dump(), recipe)
    if problems:
        raise RecipeError(source, problems)
    recipe._origin = source
    return recipe


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
    canonical = resolve_name(model)
    for path in bundled_recipes().values():
        raw = read_yaml(path)
        if isinstance(raw, dict) and raw.get("model") in (model, canonical):
            return validate_dict(raw, str(path))
    return validate_dict({"name": canonical, "model": canonical, "epochs": 20}, f"default recipe for {canonical}")



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
    keys: set[str] = set()
    for name, info in (model or Recipe).model_fields.items():
        keys.add(prefix + name)
        for sub in sections(info.annotation):
            keys.update(dotted_keys(sub, f"{prefix}{name}."))
    return sorted(keys)


def flatten(d: Any, prefix: str = "", *, keep_empty: bool = False) -> dict[str, Any]:
    """A nested dict as ``{"a.b.c": value}`` (the keys ``--set`` takes); ``keep_empty``: an
    empty mapping below the top stays a value (``model_args: {}``) instead of vanishing."""
    if isinstance(d, dict) and (d or not keep_empty or not prefix):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}.", keep_empty=keep_empty))
        return out
    return {prefix.rstrip("."): d} if prefix else {}


def with_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """A stored recipe (a checkpoint's, a run folder's recipe.yaml) with today's schema
    defaults filled in; as stored when it no longer validates."""
    try:
        return Recipe.model_validate(raw).to_dict()
    except (ValidationError, ValueError, TypeError):
        return raw


def recipe_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: old -> new`` for every resolved key that differs, ignoring data.source.

    Both are completed with today's schema defaults first, so a key added to the schema
    after a run started (at its default) is not a difference.
    """
    a, b = flatten(with_defaults(old)), flatten(with_defaults(new))
    diffs = []
    for k in sorted(set(a) | set(b)):
        if k == "data.source":
            continue
        if a.get(k, "<unset>") != b.get(k, "<unset>"):
            diffs.append(f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}")
    return diffs
