"""`cifarctl sweep`'s bookkeeping, in-process: trials are "trained" by a fake_train child process
(the one seam: ``subprocess.Popen`` as the sweep module calls it) that writes a run folder
as `cifarctl train` would. Names, several drivers, the study, the best setting, the
sweep's files and its caps; the real trainings are in test_sweep.py (slow)."""

from __future__ import annotations

import json

import pytest

optuna = pytest.importorskip("optuna")

from cifarctl.training import sweep as sw  # noqa: E402
from cifarctl.training import sweep_store as store  # noqa: E402

Q = ["--set", "epochs=1", "--set", "data.train_subset=256", "--set", "data.test_subset=200"]


def _study(out):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    name = json.loads((out / "sweep.json").read_text())["study"]
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(out / "study.journal"))))


def _folders(out):
    return sorted(p.name for p in (out / "runs").iterdir())


# ------------------------------------------------------------------ names: no lost results
def test_a_recipe_argument_that_is_not_a_recipe_is_refused_before_any_trial(tmp_path, cli, fake_train):
    out = tmp_path / "sw"
    res = cli("sweep", "s8_bn", "..", *Q, "--out", out)
    assert res.exit_code == 2, res.output
    assert "recipe" in res.output, res.output
    assert fake_train.calls == []
    assert not (out / "runs").exists()


def test_trial_names_are_unique_and_never_empty():
    names = {sw.trial_name({"recipe": r, "k": v}) for r, v in
             [("s8_bn", 0.0500001), ("s8_bn", 0.0500002), ("s8_bn", 1), ("s8_bn", 1.0), ("s8_bn", "a/b"),
              ("s8_bn", "a_b"), ("s8_bn", "é"), ("s8_bn", "ü"), ("..", 1), ("", 1)]}
    assert len(names) == 10
    from cifarctl.fsutil import name_problem

    assert all(name_problem(n) is None and not n.startswith((".", "-")) for n in names), names
    assert sw.trial_name({"recipe": "r", "a": 1, "b": 2, "seed": 3}) == sw.trial_name(
        {"seed": 3, "b": 2, "a": 1, "recipe": "r"})


def test_values_that_print_alike_get_their_own_folders_and_none_is_deleted(tmp_path, cli, fake_train):
    out = tmp_path / "sw"
    res = cli("sweep", "s8_bn", *Q, "--set", "optimizer.lr=0.0500001,0.0500002", "--workers", "2", "--out", out)
    assert res.exit_code == 0, res.output
    assert len(_folders(out)) == 2
    assert len(fake_train.calls) == 2
    values = sorted(t.value for t in _study(out).trials)
    assert values == pytest.approx([15.00001, 15.00002])  # each trial's score from its own folder
    again = cli("sweep", "s8_bn", *Q, "--set", "optimizer.lr=0.0500001,0.0500002", "--out", out)
    assert again.exit_code == 0
    assert "2 finished before, 0 to run" in again.output
    assert len(_folders(out)) == 2
    assert len(fake_train.calls) == 2


def test_values_equal_to_optuna_are_refused(cli, tmp_path, fake_train):
    res = cli("sweep", "s8_bn", *Q, "--set", "optimizer.lr=1,1.0", "--out", tmp_path / "sw")
    assert res.exit_code == 2
    assert "given twice" in res.output
    assert fake_train.calls == []


def test_a_repeated_sample_reuses_its_finished_trial(tmp_path, cli, fake_train):
    out = tmp_path / "sw"
    res = cli("sweep", "s8_bn", *Q, "--set", "optimizer.lr=0.02,0.05", "--sampler", "random", "--trials", "4",
              "--out", out)
    assert res.exit_code == 0, res.output
    trials = _study(out).trials
    assert len(trials) == 4
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len(fake_train.calls) == len(_folders(out)) == len({sw.setting_key(t.params) for t in trials})
    assert "recorded (trained before)" in res.output


def test_a_completed_folder_is_never_removed(tmp_path, fake_train):
    spec = sw.Spec(["s8_bn"], [sw.parse_axis("optimizer.lr=0.02,0.05")])
    out = tmp_path / "sw"
    list(sw.run_sweep(out, spec))
    before = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}
    (out / "study.journal").rename(tmp_path / "journal.bak")  # the study lost: folders say what is done
    events = list(sw.run_sweep(out, spec))
    assert [e.get("reused") for e in events if e["type"] == "start"] == [True, True]
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")} == before
    assert len(fake_train.calls) == 2


# ------------------------------------------------------------------ several drivers
def test_a_live_trial_of_another_driver_is_left_alone(tmp_path, fake_train):
    spec = sw.Spec(["s8_bn"], [sw.parse_axis("optimizer.lr=0.02,0.05")])
    out = tmp_path / "sw"
    study = store.open_study(out, spec, None)
    live = {"recipe": "s8_bn", "optimizer.lr": 0.02}
    held = store.claim(out, sw.trial_name(live))  # the other driver, mid-trial
    study.enqueue_trial(live)
    trial = study.ask(spec.distributions())
    (out / "runs" / sw.trial_name(live)).mkdir()  # its trainer has made the folder
    events = list(sw.run_sweep(out, spec))
    assert [e["type"] for e in events if e["type"] in ("elsewhere", "end")] == ["elsewhere", "end"]
    assert (out / "runs" / sw.trial_name(live)).is_dir()
    assert len(fake_train.calls) == 1
    assert _study(out).trials[trial.number].state.name == "RUNNING"
    # the other driver finishes: its result is recorded, whatever happened meanwhile
    study.tell(trial, 12.0)
    held.close()
    assert sorted(t.state.name for t in _study(out).trials) == ["COMPLETE", "COMPLETE"]


def test_a_trial_failed_by_another_driver_keeps_its_result(tmp_path, fake_train):
    spec = sw.Spec(["s8_bn"], [sw.parse_axis("optimizer.lr=0.02,0.05")])
    out = tmp_path / "sw"

    def meddle(args):  # another driver marks our running trial failed
        s = _study(out)
        for t in s.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
            s.tell(t.number, state=optuna.trial.TrialState.FAIL)

    fake_train.hook = meddle
    events = list(sw.run_sweep(out, spec))
    assert events[-1] == {"type": "done", "failed": 0}
    complete = [t for t in _study(out).trials if t.state.name == "COMPLETE"]
    assert len(complete) == 2


def test_a_crash_in_a_worker_exits_non_zero(tmp_path, cli, fake_train):
    def boom(args):
        raise RuntimeError("the disk went away")

    fake_train.hook = boom
    with pytest.raises(RuntimeError, match="disk went away"):
        cli("sweep", "s8_bn", *Q, "--set", "optimizer.lr=0.02,0.05", "--out", tmp_path / "sw")


def test_the_study_name_is_the_sweeps_and_a_foreign_study_is_left_untouched(tmp_path, cli, fake_train):
    a = sw.Spec(["s8_bn"], [sw.parse_axis("optimizer.lr=0.02,0.05")])
    b = sw.Spec(["s8_bn"], [sw.parse_axis("optimizer.lr=0.02,0.1")])
    assert len({store.study_name(tmp_path / "x", a), store.study_name(tmp_path / "y", a),
                store.study_name(tmp_path / "x", b)}) == 3
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    out = tmp_path / "sw"
    other = optuna.create_study(study_name=store.study_name(out, a), storage=db, direction="minimize")
    other.enqueue_trial({"x": 1.0})
    running = other.ask({"x": optuna.distributions.FloatDistribution(0, 2)})
    res = cli("sweep", "s8_bn", "--set", "optimizer.lr=0.02,0.05", "--storage", db, "--out", out)
    assert res.exit_code == 2, res.output
    assert "left untouched" in res.output, res.output
    again = optuna.load_study(study_name=other.study_name, storage=db)
    assert again.user_attrs == {}
    assert again.trials[running.number].state.name == "RUNNING"
    assert fake_train.calls == []
    assert not out.exists()


# ------------------------------------------------------------------ the headline result
def test_the_best_setting_leaves_out_a_diverged_run(tmp_path, cli, fake_train):
    fake_train.diverge_lr = 1e-12
    res = cli("sweep", "s8_bn", *Q, "--set", "optimizer.lr=0.02,1e-12", "--out", tmp_path / "sw")
    assert res.exit_code == 1
    line = next(ln for ln in res.output.splitlines() if ln.startswith("best setting"))
    assert "0.02" in line, line
    assert "12.00% mean best test accuracy" in line, line


def test_the_best_setting_is_chosen_on_validation_when_there_is_one():
    from pathlib import Path

    from cifarctl.analysis.compare import RunGroup, RunRecord, best_setting

    def group(label, test, val, status="completed"):
        run = RunRecord(name=label, path=Path(label), recipe="r", best_acc=test, best_val_acc=val,
                        selected_on="val", status=status)
        return RunGroup(recipe="r", model=None, epochs=1, runs=[run], label=label)

    got = best_setting([group("a", 80.0, 70.0), group("b", 75.0, 72.0), group("c", 90.0, 90.0, "diverged")])
    assert got[0].label == "b"
    assert got[1:] == (72.0, "validation")
