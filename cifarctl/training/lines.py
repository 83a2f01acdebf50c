"""The plain lines of a training run: what log.txt holds, and what ``cifarctl train`` prints
off a terminal (one line per epoch). :class:`cifarctl.ui.train_view.TrainView` prints the
same lines on a terminal, above its progress bars.
"""

from __future__ import annotations


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def epoch_line(ev: dict) -> str:
    """``epoch 3/24  train loss 0.612 acc 78.9%  test loss 0.521 acc 82.3%  lr 1.2e-02  14.2s  3,510 img/s``"""
    val = f"  val loss {ev['val_loss']:.3f} acc {ev['val_acc']:.1f}%" if "val_acc" in ev else ""
    ema = f"  ema acc {ev['ema_test_acc']:.1f}%" if "ema_test_acc" in ev else ""
    return (f"epoch {ev['epoch']}/{ev['epochs']}  train loss {ev['train_loss']:.3f} acc {ev['train_acc']:.1f}%"
            f"{val}  test loss {ev['test_loss']:.3f} acc {ev['test_acc']:.1f}%{ema}  lr {ev['lr']:.1e}"
            f"  {ev['seconds']:.1f}s  {ev['images_per_s']:,.0f} img/s")


def stop_point(epochs_done: int, step_in_epoch: int, steps: int) -> str:
    """Where a stopped run stopped: ``in epoch 2 after step 10/32`` (1-based, the step within
    the epoch), or ``after epoch 1`` between epochs."""
    if step_in_epoch:
        return f"in epoch {epochs_done + 1} after step {step_in_epoch}/{steps}"
    return f"after epoch {epochs_done}" if epochs_done else "before its first step"


def resume_point(epochs_done: int, step_in_epoch: int, steps: int) -> str:
    """Where a resumed run goes on: ``in epoch 2 at step 11/32`` (1-based, the step within the
    epoch), or ``at the start of epoch 2`` between epochs."""
    if step_in_epoch:
        return f"in epoch {epochs_done + 1} at step {step_in_epoch + 1}/{steps}"
    return f"at the start of epoch {epochs_done + 1}"


def start_line(ev: dict) -> str:
    """``training s8_bn (43,266 params) on cpu: 20 epochs of 391 steps, ...[, resuming in epoch 2 at step 11/391]``"""
    done = (f", resuming {resume_point(ev['epoch'], ev.get('step_in_epoch', 0), ev['steps'])}"
            if ev["resumed_step"] else "")
    return (f"training {ev['model']} ({ev['params']:,} params) on {ev['device']}: {ev['epochs']} "
            f"epoch{'s' if ev['epochs'] != 1 else ''} of {ev['steps']} steps, {ev['train_images']:,} train / "
            + (f"{ev['val_images']:,} val / " if ev.get("val_images") else "")
            + f"{ev['test_images']:,} test images{done}")


def final_lines(summary: dict) -> list[str]:
    """Best/final test accuracy, time, and the target verdict."""
    lines = []
    if summary.get("selected_on") == "val" and summary.get("best_val_acc") is not None:
        lines.append(f"best val acc {summary['best_val_acc']:.2f}% (epoch {summary['best_epoch']}, chosen on the "
                     f"validation split): test acc {summary['best_test_acc']:.2f}% there  "
                     f"final {summary['final_test_acc']:.2f}%  {summary['epochs_done']} "
                     f"epoch{'s' if summary['epochs_done'] != 1 else ''} in "
                     f"{fmt_seconds(summary.get('total_seconds') or 0)}")
    elif summary.get("best_test_acc") is not None:
        lines.append(f"best test acc {summary['best_test_acc']:.2f}% (epoch {summary['best_epoch']})  "
                     f"final {summary['final_test_acc']:.2f}%  {summary['epochs_done']} "
                     f"epoch{'s' if summary['epochs_done'] != 1 else ''} in "
                     f"{fmt_seconds(summary.get('total_seconds') or 0)}")
    if summary.get("weights") == "ema":
        ema = summary.get("ema") or {}
        raw = ema.get("trained_final_test_acc")
        lines.append(f"weights: EMA (decay {ema.get('decay')})" +
                     (f"; the trained weights ended at {raw:.2f}%" if isinstance(raw, (int, float)) else ""))
    if summary.get("stopped_early"):
        lines.append(str(summary["stopped_early"]))
    ref = summary.get("reference") or {}
    if any(ref.get(k) is not None for k in ("seed", "assignment", "best_public")):
        this = summary.get("best_test_acc")
        parts = [f"this run {this:.2f}%" if isinstance(this, (int, float)) else "this run -"]
        parts += [f"{label} {ref[k]:.2f}%" for k, label in (("seed", "seed"), ("assignment", "assignment"),
                                                            ("best_public", "best public"))
                  if isinstance(ref.get(k), (int, float))]
        lines.append("reference: " + ", ".join(parts))
    target = summary.get("target") or {}
    checks = target.get("checks") or []
    if checks:
        verdict = "PASS" if target.get("passed") else "FAIL"
        lines.append(f"target {verdict}: " + "; ".join(
            f"{c['text']} ({'ok' if c['passed'] else 'FAIL'})" for c in checks))
    else:
        lines.append("target: none set in the recipe")
    return lines
