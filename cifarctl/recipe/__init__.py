"""Recipes: one validated schema for everything a training run needs.

- :mod:`cifarctl.recipe.schema`: the pydantic sections and :class:`~cifarctl.recipe.schema.Recipe`;
- :mod:`cifarctl.recipe.load`: files, bundled names, ``--set`` overrides, validation (with the
  checks that need the model registry and the augmentations), ``MODEL|RECIPE`` arguments;
- :mod:`cifarctl.recipe.wording`: pydantic's errors as one-line problems;
- :mod:`cifarctl.recipe.targets`: what a run is judged against (target, threshold, best public).
"""
