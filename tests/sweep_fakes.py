"""A stand-in for a sweep trial's ``python -m cifarctl train`` process (the sweep module's
``subprocess.Popen``): it writes the run folder as `train` would, without training."""

from __future__ import annotations

import json
import os
import subprocess

import yaml

REAL_POPEN = subprocess.Popen


class FakeTrain:
    """Stands in for ``python -m cifarctl train ...``: writes the run folder and exits."""

    calls: list[list[str]] = []
    diverge_lr: float | None = None   # this lr "diverges" late: status diverged, exit 3
    hook = None                        # called with the argv before anything is written

    def __new__(cls, argv, *args, **kwargs):
        if list(argv[1:3]) != ["-m", "cifarctl"]:  # anything else the process starts (ldconfig ...)
            return REAL_POPEN(argv, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, argv, stdout=None, stderr=None, env=None, preexec_fn=None):
        args = list(argv[3:])
        FakeTrain.calls.append(args)
        if FakeTrain.hook is not None:
            FakeTrain.hook(args)
        self.code = 0
        if "--resume" in args:
            folder = args[args.index("--resume") + 1]
            summary = json.loads(open(os.path.join(folder, "summary.json")).read())
            summary["status"] = "completed"
            self._write(folder, summary, None)
            return
        recipe = args[1]
        sets = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
        from cifarctl.recipe.load import load_recipe

        r = load_recipe(recipe, sets)  # refuses what train would refuse
        lr = r.optimizer.lr
        folder = os.path.join(args[args.index("--runs-dir") + 1], args[args.index("--name") + 1])
        os.mkdir(folder)  # as create_run_dir: a folder that exists is an error here
        status = "diverged" if lr == FakeTrain.diverge_lr else "completed"
        self.code = 3 if status == "diverged" else 0
        acc = 24.2 if status == "diverged" else 10.0 + min(lr, 1) * 100
        summary = {"status": status, "best_test_acc": acc, "final_test_acc": acc, "epochs_planned": 1,
                   "recipe": r.name, "seed": r.seed, "selected_on": "test"}
        self._write(folder, summary, {"name": r.name, "epochs": r.epochs, "seed": r.seed,
                                      "optimizer": {"name": "sgd", "lr": lr}})
        stdout.write(b"error: diverged\n" if self.code else b"done\n")

    @staticmethod
    def _write(folder, summary, recipe):
        os.makedirs(os.path.join(folder, "checkpoints"), exist_ok=True)
        with open(os.path.join(folder, "summary.json"), "w") as f:
            json.dump(summary, f)
        with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
            f.write(json.dumps({"epoch": 1, "test_acc": summary["best_test_acc"]}) + "\n")
        if recipe is not None:
            with open(os.path.join(folder, "recipe.yaml"), "w") as f:
                yaml.safe_dump(recipe, f)

    def wait(self):
        return self.code
