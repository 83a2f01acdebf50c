"""Logs in the ecosystem's formats: metrics.csv beside metrics.jsonl in every run folder,
TensorBoard event files read back with tensorboard's own reader, off with a recipe key."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import train_tiny


def test_metrics_csv_has_the_jsonl_rows(tmp_path):
    run = train_tiny(tmp_path / "runs", "r")
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    with open(run / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in table] == [r["epoch"] for r in rows]
    assert list(table[0]) == list(rows[0])
    assert float(table[-1]["test_acc"]) == pytest.approx(rows[-1]["test_acc"])


def test_tensorboard_events_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train_tiny(tmp_path / "runs", "tb")
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"epoch/test_acc", "epoch/train_loss", "epoch/lr", "step/loss", "step/lr"} <= set(tags), tags
    assert [e.step for e in acc.Scalars("epoch/test_acc")] == [1, 2]
    assert acc.Scalars("epoch/test_acc")[-1].value == pytest.approx(
        json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["test_acc"], rel=1e-5)
    off = train_tiny(tmp_path / "runs", "off", "--set", "tensorboard=false")
    assert not (off / "tensorboard").exists()
    assert (off / "metrics.csv").is_file()
