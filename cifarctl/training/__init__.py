"""Training: a recipe becomes a run folder.

``run.run_training`` (what ``cifarctl train`` calls) -> ``prepare.prepare`` (data on the
device, model, optimizer, schedule) -> ``engine.train_epochs`` (the loop, yielding events).
Importing this package imports nothing; its modules import torch.
"""
