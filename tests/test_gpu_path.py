"""The GPU path, proven on the CPU: the engine runs one step path on every device, so what
these tests count here is what a GPU would see.

- no host read in a training step (a counting ``TorchFunctionMode``: 10 steps vs 50);
- epoch-end files written off the loop (a slow checkpoint writer does not hold it up);
- no recompiles after the first epoch for a compiled model (dynamo's counters, with the
  eager backend so that nothing is compiled to machine code: the guards are the same);
- the loss guards still name the step where a divergence began.
"""

from __future__ import annotations

import threading

import pytest
import torch
from torch.overrides import TorchFunctionMode

from cifarctl.training import engine
from cifarctl.training.run import run_training

# what makes the host wait for a tensor's value
READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.cpu, torch.Tensor.numpy, torch.Tensor.__bool__,
         torch.Tensor.__float__, torch.Tensor.__int__, torch.Tensor.__index__}


class CountReads(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in READS:
            self.n += 1
        return func(*args, **(kwargs or {}))


def _reads_in_loop(tmp_path, monkeypatch, steps: int, batch: int = 16) -> int:
    """Host reads while ``steps`` steps of s8_bn run off a terminal (one epoch, 48 test images)."""
    counter = CountReads()
    real = engine.train_epochs

    def counted(t):
        with counter:
            yield from real(t)

    monkeypatch.setattr(engine, "train_epochs", counted)
    s = run_training("s8_bn", overrides=[f"data.source=synthetic:{steps * batch}:48", f"data.batch_size={batch}",
                                         "data.test_batch_size=16", "epochs=1"],
                     runs_dir=tmp_path / f"runs{steps}", device="cpu", view=None)
    assert s["status"] == "completed"
    assert s["steps"] == steps
    return counter.n


def test_no_host_read_in_a_training_step(tmp_path, monkeypatch):
    few, many = _reads_in_loop(tmp_path, monkeypatch, 10), _reads_in_loop(tmp_path, monkeypatch, 50)
    assert (many - few) / 40 == 0, f"{few} host reads in 10 steps, {many} in 50"


def test_epoch_end_files_are_written_off_the_loop(tmp_path, monkeypatch):
    """Epoch 1's checkpoint save waits until epoch 2 has started training: it can only
    finish when the loop does not wait for it."""
    from cifarctl import runs

    next_epoch_started = threading.Event()
    waited = []
    real_save, real_step = runs.RunFiles.save_checkpoint, engine._step

    def slow_save(self, state, path):
        if state["epoch"] == 1:
            waited.append(next_epoch_started.wait(timeout=30))
        real_save(self, state, path)

    def step(t, *args):
        if t.epoch >= 1:
            next_epoch_started.set()
        return real_step(t, *args)

    monkeypatch.setattr(runs.RunFiles, "save_checkpoint", slow_save)
    monkeypatch.setattr(engine, "_step", step)
    s = run_training("s8_bn", overrides=["data.source=synthetic:128:32", "data.batch_size=32", "epochs=2"],
                     runs_dir=tmp_path, device="cpu", view=None)
    assert s["status"] == "completed"
    assert waited, "epoch 1's save held up the loop"
    assert all(waited), "epoch 1's save held up the loop"
    from cifarctl.checkpoints import load_checkpoint

    run = next(tmp_path.iterdir())
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2
    assert (run / "curves.png").is_file()


CASES = {  # ragged train and test splits, eval mode, TTA views; speedrun freezes its whitening bias after epoch 1
    "s8_bn": ["data.source=synthetic:200:50", "data.batch_size=64", "data.test_batch_size=32", "eval_tta=flip"],
    "speedrun": ["data.source=synthetic:200:50", "data.batch_size=64", "data.test_batch_size=96",
                 "model_args.widths=[16, 32, 32]", "model_args.whiten_bias_epochs=1"],
}


@pytest.mark.parametrize("recipe", sorted(CASES))
def test_no_recompiles_after_the_first_epoch(recipe, tmp_path, monkeypatch):
    """Everything a run compiles is compiled in epoch 1."""
    from torch._dynamo.utils import counters

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, backend="eager"))
    torch._dynamo.reset()
    seen = []

    class View:
        def handle(self, ev):
            if ev["type"] == "epoch":
                seen.append(sum(counters["stats"].values()) + sum(counters["recompiles"].values()))

        def finish(self, summary):
            pass

    s = run_training(recipe, overrides=[*CASES[recipe], "epochs=3", "compile=true"],
                     runs_dir=tmp_path, device="cpu", view=View())
    torch._dynamo.reset()
    assert s["status"] == "completed"
    assert s["steps"] == 9  # 3 full batches of 64 per epoch
    assert seen[0] > 0, f"dynamo counters at each epoch end: {seen}"
    assert seen[1] == seen[0] == seen[2], f"dynamo counters at each epoch end: {seen}"


def test_a_divergence_names_its_first_step_and_no_checkpoint_after_it(tmp_path, monkeypatch):
    from cifarctl.checkpoints import load_checkpoint
    from cifarctl.training.guards import DivergedError

    monkeypatch.setenv("CIFARCTL_TEST_NAN_AT_STEP", "6")
    with pytest.raises(DivergedError, match="diverged at step 6"):
        run_training("s8_bn", overrides=["data.source=synthetic:256:32", "data.batch_size=64", "epochs=3"],
                     runs_dir=tmp_path, device="cpu", view=None)
    ckpt = load_checkpoint(next(tmp_path.iterdir()) / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"]) == (1, 4)


def test_cuda_n_is_made_the_current_device_and_determinism_is_the_recipes(monkeypatch):
    """No GPU here: the torch.cuda calls are stubbed and the device each one gets is checked."""
    from cifarctl.training import builders

    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.append(("set_device", d)))
    monkeypatch.setattr(torch, "use_deterministic_algorithms",
                        lambda on, warn_only=False: calls.append(("deterministic", on)))
    builders.enter_device(torch.device("cuda", 1))
    builders.enter_device(torch.device("cpu"))
    assert calls == [("set_device", torch.device("cuda", 1))]
    builders.set_determinism(True, torch.device("cuda", 1))
    assert calls[-1] == ("deterministic", True)
    assert torch.backends.cudnn.deterministic
    assert not torch.backends.cudnn.benchmark
    builders.set_determinism(False, torch.device("cuda", 1))
    assert calls[-1] == ("deterministic", False)
    assert torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = torch.backends.cudnn.deterministic = False
    n = len(calls)
    builders.set_determinism(True, torch.device("cpu"))  # CPU kernels are deterministic already
    assert len(calls) == n


def test_host_copy_is_a_copy_and_reuses_its_buffers():
    from cifarctl.training.writer import host_copy

    live = {"model": {"w": torch.ones(3)}, "opt": [torch.zeros(2), 5], "n": "x"}
    buffers: dict = {}
    snap = host_copy(live, buffers).ready()
    live["model"]["w"].add_(1)
    assert torch.equal(snap["model"]["w"], torch.ones(3))
    assert snap["opt"][1] == 5
    assert snap["n"] == "x"
    first = buffers[("model", "w")]
    again = host_copy(live, buffers).ready()
    assert again["model"]["w"] is first
    assert torch.equal(first, torch.full((3,), 2.0))


# ---------------------------------------------------------------- precision on the GPUs students have
def _overflow_then_normal(opt_name: str, fused: bool | None):
    """A parameter trained one GradScaler step with an inf gradient, then one normal step."""
    from cifarctl.recipe.load import load_recipe
    from cifarctl.training.builders import build_optimizer

    opt = ("{name: sgd, lr: 0.1, momentum: 0.9}" if opt_name == "sgd" else f"{{name: {opt_name}, lr: 0.1}}")
    recipe = load_recipe("s8_bn", [f"optimizer={opt}"])
    model = torch.nn.Linear(4, 1, bias=False)
    torch.nn.init.ones_(model.weight)
    opt = build_optimizer(model, recipe)
    if fused is not None:  # the reference: torch's unfused optimizer, as torch makes it
        kw = {k: v for k, v in opt.defaults.items() if k not in ("fused", "foreach", "decoupled_weight_decay")}
        opt = type(opt)(model.parameters(), **kw, foreach=False)
    scaler = torch.amp.GradScaler("cpu")
    for g in (float("inf"), 1.0):
        opt.zero_grad()
        scaler.scale((model.weight * g).sum()).backward()
        scaler.step(opt)
        scaler.update()
    return opt, model.weight.detach().clone()


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_an_overflow_step_leaves_the_fused_optimizer_as_torchs_unfused_one(opt_name):
    """fp16 + GradScaler: the scale starts at 2^16, so an early overflow step is routine.
    torch's fused SGD makes its momentum with ``empty_like`` and skips the overflow step:
    without zeroed buffers the next step reads uninitialised memory (NaN-filled here:
    deterministic mode fills ``empty_like``, as it does for a ``deterministic: true`` run)."""
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        opt, w = _overflow_then_normal(opt_name, None)
    finally:
        torch.use_deterministic_algorithms(was)
    assert opt.defaults["fused"], "the fused kernel runs on the CPU too"
    _, ref = _overflow_then_normal(opt_name, False)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w, ref)
    if opt_name == "sgd":
        buf = opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"]
        torch.testing.assert_close(buf, torch.ones_like(buf))  # the one real gradient


GPUS = {"T4": (False, True), "V100": (False, True), "A100": (True, True), "H100": (True, True),
        "P100": (False, False)}  # (bf16 in hardware, bf16 emulated)


@pytest.mark.parametrize("gpu", sorted(GPUS))
def test_precision_auto_picks_bf16_only_where_the_hardware_has_it(gpu, monkeypatch):
    from cifarctl.errors import UsageError
    from cifarctl.training.builders import precision_for

    native, emulated = GPUS[gpu]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: native or (emulated and including_emulation))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: f"Tesla {gpu}")
    dev = torch.device("cuda", 0)
    dtype, note = precision_for("auto", dev)
    if native:
        assert (dtype, note) == (torch.bfloat16, None)
    else:
        assert dtype == torch.float16
        assert "GradScaler" in note
    assert precision_for("fp16", dev)[0] == torch.float16
    if native or emulated:
        dtype, note = precision_for("bf16", dev)
        assert dtype == torch.bfloat16
        assert (note is None) == native
    else:
        with pytest.raises(UsageError, match="no bf16 support"):
            precision_for("bf16", dev)


def test_channels_last_is_off_on_cuda_for_group_norm_nets():
    """ATen's CUDA group_norm makes its input NCHW: an NHWC net would copy around every norm."""
    from cifarctl.recipe.load import load_recipe
    from cifarctl.training.builders import uses_channels_last

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    for name in ("s8_gn", "s8_ln"):
        r = load_recipe(name)
        assert r.channels_last
        assert not uses_channels_last(r, cuda)
        assert uses_channels_last(r, cpu)
    for name in ("s8_bn", "s9_dilated", "speedrun"):
        assert uses_channels_last(load_recipe(name), cuda)
    assert not uses_channels_last(load_recipe("s8_bn", ["channels_last=false"]), cuda)


# ---------------------------------------------------------------- RNG state on resume
def _fake_cuda(monkeypatch, visible: list[int], states: dict):
    """torch.cuda's RNG calls over ``visible[0]`` GPUs whose generator states are ``states``."""
    def index(device="cuda"):
        d = device if isinstance(device, int) else torch.device(device).index
        return 0 if d is None else d

    def get(device="cuda"):
        return states[index(device)].clone()

    def put(state, device="cuda"):
        i = index(device)
        if i >= visible[0]:
            raise IndexError("tuple index out of range")  # torch.cuda.default_generators[i]
        states[i] = state.clone()

    for mod in (torch.cuda, torch.cuda.random):
        monkeypatch.setattr(mod, "get_rng_state", get)
        monkeypatch.setattr(mod, "set_rng_state", put)
        monkeypatch.setattr(mod, "device_count", lambda: visible[0], raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_a_resume_where_fewer_gpus_are_visible_restores_the_training_gpus_generator(monkeypatch):
    from cifarctl.checkpoints import capture_rng, restore_rng

    visible = [2]
    states = {0: torch.tensor([10], dtype=torch.uint8), 1: torch.tensor([11], dtype=torch.uint8)}
    _fake_cuda(monkeypatch, visible, states)
    rng = capture_rng(None, torch.device("cuda", 1))  # trained on cuda:1 of 2
    assert torch.equal(rng["cuda"], torch.tensor([11], dtype=torch.uint8))
    visible[0] = 1  # resumed on a machine (or CUDA_VISIBLE_DEVICES) with one GPU
    restore_rng(rng, None, torch.device("cuda", 0))
    assert states[0].item() == 11
    legacy = {**rng, "cuda": [torch.tensor([20], dtype=torch.uint8), torch.tensor([21], dtype=torch.uint8)]}
    restore_rng(legacy, None, torch.device("cuda"))  # an older checkpoint: one state per visible GPU
    assert states[0].item() == 20


def _rank_rngs(rank: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from cifarctl.checkpoints import capture_rng
    from cifarctl.training import distributed
    from cifarctl.training.checkpoint import rank_rng

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        torch.manual_seed(100 + rank)  # each rank's own dropout generator
        mine = capture_rng()
        gathered = distributed.gather_on_main(mine)
        ckpt = distributed.broadcast_object({"rng": mine, "rng_ranks": gathered})  # rank 0 writes it
        torch.manual_seed(0)
        torch.set_rng_state(rank_rng(ckpt, rank, 2)["torch"])
        torch.save({"mine": mine["torch"], "restored": torch.get_rng_state(),
                    "ranks": None if gathered is None else [g["torch"] for g in gathered]}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_every_rank_resumes_with_its_own_rng_state(tmp_path):
    """Data-parallel: rank 0 writes the checkpoint; each rank's generators are in it."""
    import torch.multiprocessing as mp

    from cifarctl.training.checkpoint import rank_rng

    mp.spawn(_rank_rngs, args=(f"file://{tmp_path / 'store'}", str(tmp_path / "rng")), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rng.{r}", weights_only=True) for r in (0, 1))
    assert r1["ranks"] is None
    assert len(r0["ranks"]) == 2
    assert torch.equal(r0["ranks"][1], r1["mine"])
    assert not torch.equal(r0["mine"], r1["mine"])
    for r in (r0, r1):
        assert torch.equal(r["restored"], r["mine"])
    assert rank_rng({"rng": "r0", "rng_ranks": ["a", "b"]}, 1, 3) == "r0"  # another world size: rank 0's


# ---------------------------------------------------------------- small launches, by construction
def test_tta_builds_no_tensor_from_python_per_chunk(monkeypatch):
    """``torch.tensor(list)`` is a pageable host-to-device copy: at most once per run."""
    from cifarctl.training import evaluation

    made = []
    real = torch.tensor
    monkeypatch.setattr(torch, "tensor", lambda *a, **k: made.append(a) or real(*a, **k))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
    x, y = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8), torch.randint(0, 10, (40,))
    for chunk in (4, 40):  # 10 chunks, then 1
        evaluation.evaluate(model, x, y, normalize=lambda b: b.float(), batch_size=chunk * 6, tta="flip_translate")
    assert len(made) <= 1, f"{len(made)} tensors built from Python in 11 chunks"


def test_compile_is_static_and_ddp_broadcasts_no_buffers_per_forward(monkeypatch):
    """Shapes are fixed by design, so torch.compile gets ``dynamic=False`` (the eval batch
    differs from the train batch: ``dynamic=None`` would mark it symbolic); DDP's forward
    runs no buffer broadcast (rank 0's buffers are broadcast before each evaluation)."""
    import torch.nn.parallel

    from cifarctl.training import distributed
    from cifarctl.training.prepare import prepare
    from cifarctl.recipe.load import load_recipe

    seen = {}
    monkeypatch.setattr(torch, "compile", lambda model, **kw: seen.setdefault("compile", kw) and model)
    prepare(load_recipe("s8_bn", ["compile=true", "data.batch_size=16"]), data_source="synthetic:64:16",
            device="cpu")
    assert seen["compile"] == {"dynamic": False}
    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda model, **kw: seen.setdefault("ddp", kw))
    distributed.wrap_model(torch.nn.Linear(2, 2), torch.device("cpu"), False, 8, [])
    assert seen["ddp"]["broadcast_buffers"] is False


def test_sync_bn_on_cuda_warns_of_its_host_sync_per_layer(monkeypatch):
    """torch's SyncBatchNorm indexes ``count_all[mask]``: a documented choice, said in a notice."""
    import torch.nn.parallel

    from cifarctl.registry import create_model
    from cifarctl.training import distributed

    monkeypatch.setattr(torch.nn.parallel, "DistributedDataParallel", lambda model, **kw: model)
    notices: list[str] = []
    distributed.wrap_model(create_model("s8_bn"), torch.device("cuda", 0), True, 32, notices)
    assert any("each of the 8 BatchNorm layers every step" in n for n in notices), notices
    notices.clear()
    distributed.wrap_model(create_model("s8_bn"), torch.device("cuda", 0), False, 32, notices)
    assert not any("host sync" in n for n in notices)


# ---------------------------------------------------------------- launches per step
def _bench(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ops_per_step_of_s8_bn_stay_few():
    """aten ops per step, counted by a TorchDispatchMode (10 vs 50 steps): each is a kernel
    launch on a GPU. 402 before the fused optimizer on the CPU, the augmentation in blocks
    and the sums and guards from one loss buffer. (Batch 16: the count does not depend on it.)"""
    n, per_op = _bench("bench_ops").ops_per_step("s8_bn", batch=16)
    assert n <= 250, f"{n} aten ops per step: {per_op}"
    assert per_op.get("add_", 0) <= 12, per_op
    assert per_op.get("mul_", 0) <= 2, per_op  # one fused optimizer op


@pytest.mark.slow
def test_gpu_sh_dry_run_writes_every_part(tmp_path, jpeg_archive):
    """``DEVICE=cpu SCALE=tiny bash benchmarks/gpu.sh``: every part writes its file under $OUT."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "SCALE": "tiny", "OUT": str(out), "ARCHIVE": str(jpeg_archive),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    res = subprocess.run(["bash", str(root / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True,
                         timeout=3600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = (out / "gpu-sh.log").read_text()
    for name in ("smoke.md", "syncs-s8_bn.md", "ops.md", "boundary.md", "data.md", "epoch.md", "speedrun.md",
                 "ddp.md"):
        text = (out / name).read_text()
        assert text.strip(), f"{name}:\n{text}\n{log}"
        assert "failed" not in text, f"{name}:\n{text}\n{log}"
        assert "cut at" not in text, f"{name}:\n{text}\n{log}"
    assert "skipped: 2 processes with SyncBatchNorm need 2 GPUs" in (out / "ddp.md").read_text()


def test_a_resumed_fused_optimizer_keeps_its_state_in_the_parameters_layout():
    """Checkpoints hold optimizer state contiguous; torch's fused SGD walks parameter,
    gradient and momentum as flat arrays, so a channels_last parameter with a contiguous
    momentum after a resume trained on scrambled momentum (a resume was not exact)."""
    from cifarctl.training.checkpoint import _match_parameter_layout

    w = torch.randn(4, 3, 3, 3).contiguous(memory_format=torch.channels_last)
    p = torch.nn.Parameter(w.clone())
    q = torch.nn.Parameter(w.clone())
    opts = [torch.optim.SGD([x], lr=0.1, momentum=0.9, fused=True) for x in (p, q)]
    g1, g2 = torch.randn_like(w), torch.randn_like(w)
    for x, opt in zip((p, q), opts):
        x.grad = g1.clone()
        opt.step()
    state = opts[1].state_dict()
    state["state"][0]["momentum_buffer"] = state["state"][0]["momentum_buffer"].contiguous()  # as saved
    opts[1].load_state_dict(state)
    _match_parameter_layout(opts[1])
    assert opts[1].state[q]["momentum_buffer"].stride() == q.stride()
    for x, opt in zip((p, q), opts):
        x.grad = g2.clone()
        opt.step()
    assert torch.equal(p, q)
