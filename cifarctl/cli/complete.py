"""Shell completion of argument and option values: recipes, models, run folders, devices.

Every TAB starts ``cifarctl`` anew (``_CIFARCTL_COMPLETE=complete_bash ...``), so these
functions only look at files: no torch, no recipe schema, no model registry. Recipe names
are the bundled ``*.yaml`` names (plus ``.yaml`` files in the folder typed so far); model
names are read from the ``@register_model`` decorators in the source of
``cifarctl/models/`` (tests check they equal the registry's); a run folder is a folder
holding ``metrics.jsonl``, ``summary.json`` or ``checkpoints/``; devices are ``auto``,
``cpu`` and ``cuda``/``cuda:N`` for the NVIDIA GPUs the driver lists.

When a function offers nothing, bash and zsh fall back to completing file names.
:func:`skip_value_coercion` keeps typer from loading pydantic on every TAB.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from cifarctl import CLASSES

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
RUNS_DIR = "runs"  # the default of `train --runs-dir` and of `compare`
RUN_MARKS = ("metrics.jsonl", "summary.json", "checkpoints")
MAX_ENTRIES = 2000  # folder entries looked at per TAB: a TAB in a huge folder stays quick


# The recipe keys a --set can name: cifarctl.recipe.load.dotted_keys(), written out so that a TAB
# imports no pydantic (tests/test_complete.py checks the two agree).
SET_KEYS = (
    "assignment",
    "channels_last",
    "compile",
    "data",
    "data.augment",
    "data.augment_backend",
    "data.batch_size",
    "data.image_size",
    "data.label_kind",
    "data.normalize",
    "data.normalize.mean",
    "data.normalize.std",
    "data.source",
    "data.test_batch_size",
    "data.test_subset",
    "data.train_subset",
    "data.val_split",
    "data.workers",
    "description",
    "deterministic",
    "early_stop",
    "early_stop.min_delta",
    "early_stop.mode",
    "early_stop.monitor",
    "early_stop.patience",
    "ema",
    "ema.decay",
    "ema.warmup_steps",
    "epochs",
    "eval_tta",
    "lookahead",
    "lookahead.decay",
    "lookahead.every_steps",
    "lookahead.ramp_power",
    "loss",
    "loss.label_smoothing",
    "loss.name",
    "model",
    "model_args",
    "name",
    "optimizer",
    "optimizer.betas",
    "optimizer.eps",
    "optimizer.lr",
    "optimizer.momentum",
    "optimizer.name",
    "optimizer.nesterov",
    "optimizer.norm_lr_scale",
    "optimizer.weight_decay",
    "precision",
    "rules",
    "rules.assignment",
    "rules.augment",
    "rules.batch_size",
    "rules.best_public",
    "rules.best_public.acc",
    "rules.best_public.source",
    "rules.forbid",
    "rules.layer_pattern",
    "rules.min_rf",
    "rules.min_test_acc",
    "rules.misclassified_grid",
    "rules.optimizer",
    "rules.peak_epoch",
    "rules.require",
    "rules.scheduler",
    "scheduler",
    "scheduler.anneal_strategy",
    "scheduler.div_factor",
    "scheduler.end_factor",
    "scheduler.eta_min",
    "scheduler.factor",
    "scheduler.final_div_factor",
    "scheduler.gamma",
    "scheduler.lr_find",
    "scheduler.lr_find.accept_range",
    "scheduler.lr_find.end_lr",
    "scheduler.lr_find.fallback_max_lr",
    "scheduler.lr_find.num_iter",
    "scheduler.lr_find.start_lr",
    "scheduler.lr_find.step_mode",
    "scheduler.max_lr",
    "scheduler.milestones",
    "scheduler.min_lr",
    "scheduler.mode",
    "scheduler.name",
    "scheduler.patience",
    "scheduler.pct_start",
    "scheduler.start_factor",
    "scheduler.step_size",
    "scheduler.t_max",
    "scheduler.three_phase",
    "scheduler.threshold",
    "scheduler.warmup_pct",
    "schema_version",
    "seed",
    "sync_bn",
    "target",
    "target.max_epochs",
    "target.max_params",
    "target.min_test_acc",
    "tensorboard",
)


# ------------------------------------------------------------------------ names
def model_names() -> list[str]:
    """Registered model names and aliases, from the ``@register_model`` decorators in the
    source of the model families (without importing them: that would import torch)."""
    import ast

    names: set[str] = set()
    for path in sorted(MODELS_DIR.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                for deco in node.decorator_list:
                    names.update(_registered(deco, node.name))
    return sorted(names)


def _registered(deco, default: str) -> list[str]:
    """The names a ``@register_model`` / ``@register_model(name=..., aliases=(...))``
    decorator registers; [] for any other decorator."""
    import ast

    func = deco.func if isinstance(deco, ast.Call) else deco
    called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if called != "register_model":
        return []
    if not isinstance(deco, ast.Call):
        return [default]
    kw = {k.arg: k.value for k in deco.keywords if k.arg}
    name = kw.get("name")
    out = [name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else default]
    aliases = kw.get("aliases")
    if isinstance(aliases, (ast.Tuple, ast.List)):
        out += [e.value for e in aliases.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return out


def recipe_names() -> list[str]:
    """The bundled recipes' names."""
    from cifarctl.bundled import bundled_recipes

    return list(bundled_recipes())


# ------------------------------------------------------------------------ folders
def _split(incomplete: str) -> tuple[str, Path, str]:
    """``"runs/s8"`` -> (``"runs/"``, the folder to list, ``"s8"``): what is kept as typed,
    where to look, and the start of the name being typed."""
    head, sep, tail = incomplete.rpartition("/")
    shown = head + sep
    folder = Path(os.path.expanduser(shown)) if shown else Path(".")
    return shown, folder, tail


def _entries(folder: Path, tail: str, budget: list[int]) -> Iterator[os.DirEntry]:
    """Entries of ``folder`` whose names start with ``tail``, sorted; hidden ones only when
    ``tail`` starts with a dot; never one whose name holds a control character. Stops when
    the budget of entries is spent."""
    try:
        with os.scandir(folder) as it:
            found = []
            for e in it:
                budget[0] -= 1
                if budget[0] < 0:
                    break
                if e.name.startswith(tail) and (tail.startswith(".") or not e.name.startswith(".")) \
                        and e.name.isprintable():  # a name with ESC or CR would reach the terminal raw
                    found.append(e)
    except OSError:
        return
    yield from sorted(found, key=lambda e: e.name)


def _is_dir(e: os.DirEntry) -> bool:
    try:
        return e.is_dir()
    except OSError:
        return False


def is_run_dir(path: str | os.PathLike) -> bool:
    """A run folder: it holds ``metrics.jsonl``, ``summary.json`` or ``checkpoints/``."""
    p = Path(path)
    return any(os.path.exists(p / mark) for mark in RUN_MARKS)


def run_dirs(incomplete: str, checkpoints: bool = False, resumable: bool = False) -> list[str]:
    """Run folders whose path starts with ``incomplete``, as typed.

    Looks in the folder typed so far (the current one for a bare name): its run folders,
    and the run folders one level inside the others that match (``ru<TAB>`` offers
    ``runs/<run>``; ``runs/sweep/`` is reached the same way). ``checkpoints`` adds ``.pt``
    files of that folder; ``resumable`` keeps only run folders with a checkpoint.
    """
    shown, folder, tail = _split(incomplete)
    budget = [MAX_ENTRIES]
    ok = _has_checkpoint if resumable else is_run_dir
    out = []
    for e in _entries(folder, tail, budget):
        if _is_dir(e):
            if ok(e.path):
                out.append(shown + e.name)
            elif not is_run_dir(e.path):
                out += [f"{shown}{e.name}/{c.name}" for c in _entries(Path(e.path), "", budget)
                        if _is_dir(c) and ok(c.path)]
        elif checkpoints and e.name.endswith(".pt"):
            out.append(shown + e.name)
    return out


def _has_checkpoint(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, "checkpoints", f"{w}.pt")) for w in ("last", "best"))


def recipe_files(incomplete: str) -> list[str]:
    """``.yaml``/``.yml`` files in the folder typed so far whose path starts with ``incomplete``."""
    shown, folder, tail = _split(incomplete)
    return [shown + e.name for e in _entries(folder, tail, [MAX_ENTRIES])
            if e.name.endswith((".yaml", ".yml")) and not _is_dir(e)]


# ------------------------------------------------------------------------ devices
def cuda_count(env: dict[str, str] | None = None, proc: Path = Path("/proc/driver/nvidia/gpus"),
               dev: Path = Path("/dev")) -> int:
    """NVIDIA GPUs the driver lists (``/proc/driver/nvidia/gpus``, else ``/dev/nvidiaN``),
    at most as many as ``CUDA_VISIBLE_DEVICES`` names when it is set; 0 without a driver."""
    env = os.environ if env is None else env
    try:
        count = sum(1 for p in proc.iterdir() if p.is_dir())
    except OSError:
        try:
            count = sum(1 for p in dev.iterdir() if p.name.startswith("nvidia") and p.name[6:].isdigit())
        except OSError:
            count = 0
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        named = 0
        for item in visible.split(","):
            if not item.strip() or item.strip().startswith("-"):  # CUDA stops at an invalid entry
                break
            named += 1
        count = min(count, named)
    return count


def device_names(env: dict[str, str] | None = None, **where) -> list[str]:
    """``auto``, ``cpu``, and ``cuda``, ``cuda:0`` ... for each GPU found."""
    n = cuda_count(env, **where)
    return ["auto", "cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(n)] if n else [])


# ------------------------------------------------------------------------ the callbacks
# Typer calls these with the word being completed and keeps the values that start with it.
def _starting(names: list[str], incomplete: str) -> list[str]:
    return [n for n in names if n.startswith(incomplete)]


def complete_recipe(incomplete: str) -> list[str]:
    """A RECIPE argument: bundled recipe names, then ``.yaml`` files."""
    names = _starting(recipe_names(), incomplete) if "/" not in incomplete else []
    return names + recipe_files(incomplete)


def complete_set(incomplete: str) -> list[str]:
    """A ``--set`` value: ``KEY=`` for the recipe keys starting with what is typed (the
    value is the user's to type)."""
    if "=" in incomplete:
        return []
    return [f"{k}=" for k in SET_KEYS if k.startswith(incomplete)]


def complete_model(incomplete: str) -> list[str]:
    """A model name (``cifarctl models PATTERN``)."""
    return _starting(model_names(), incomplete)


def complete_model_or_recipe(incomplete: str) -> list[str]:
    """A MODEL|RECIPE argument: recipe names, model names (a shared name once), ``.yaml`` files."""
    names = [] if "/" in incomplete else _starting(sorted(set(recipe_names()) | set(model_names())), incomplete)
    return names + recipe_files(incomplete)


def complete_run_dir(incomplete: str) -> list[str]:
    """Run folders (``compare``); a bare TAB in a project offers ``runs/<run>``."""
    return run_dirs(incomplete)


def complete_run_or_checkpoint(incomplete: str) -> list[str]:
    """RUN_DIR|CHECKPOINT (``eval``, ``misclassified``): run folders and ``.pt`` files."""
    return run_dirs(incomplete, checkpoints=True)


def complete_resume(incomplete: str) -> list[str]:
    """``train --resume``: run folders with a checkpoint to continue from."""
    return run_dirs(incomplete, resumable=True)


def complete_device(incomplete: str) -> list[str]:
    return _starting(device_names(), incomplete)


def complete_class(incomplete: str) -> list[str]:
    """A CIFAR-10 class name (``misclassified --true/--pred``)."""
    return _starting(list(CLASSES), incomplete)


# ------------------------------------------------------------------------ the run itself
def skip_value_coercion() -> None:
    """For a completion run: leave parameter values as typed while the words so far are parsed.

    Typer converts each parameter's value through a pydantic ``TypeAdapter`` even when click
    parses resiliently, as it does to complete: that imports pydantic and builds adapters,
    about half of a TAB's time (docs/benchmarks.md), for values completion never reads. Only parsing with
    ``ctx.resilient_parsing`` skips it. With a typer that lacks this hook nothing changes and
    completion is just slower (the completion test then fails on pydantic being imported).
    """
    try:
        from typer.core import _TyperParameter
    except ImportError:
        return
    process = getattr(_TyperParameter, "process_value", None)
    if process is None or getattr(process, "skips_coercion", False):
        return

    def process_value(self, ctx, value):
        if getattr(ctx, "resilient_parsing", False):
            return value
        return process(self, ctx, value)

    process_value.skips_coercion = True
    _TyperParameter.process_value = process_value
