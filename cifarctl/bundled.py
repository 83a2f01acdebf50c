"""Where the bundled recipes are: only ``pathlib``, so shell completion can list them without
loading the recipe schema (``cifarctl.recipe.load`` uses them)."""

from __future__ import annotations

from pathlib import Path


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
