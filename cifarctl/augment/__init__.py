"""Augmentation: the recipe's albumentations 2.x steps.

- :mod:`~cifarctl.augment.spec`: validation, torch-free (the recipe schema uses it);
- :mod:`~cifarctl.augment.device`: the steps as batched tensor ops on the training device;
- :mod:`~cifarctl.augment.per_image`: the albumentations pipeline per image, in DataLoader workers.

Importing this package imports nothing: ``cifarctl --help`` and recipe validation stay fast.
"""
