"""The batched engine on a device: CPU parity through the device-aware path, errors, placement, and CUDA parity.

This machine class has no GPU: the device-aware code is tested on the CPU (``device="cpu"`` must give the
weights the engine gave before it knew about devices, bitwise), its placement of every tensor on a fake
device (PyTorch's FakeTensorMode, which raises on any operation mixing devices), and against a real GPU
only where one is present (those tests skip with the reason otherwise).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily
from typer.testing import CliRunner

from miaudit.errors import ConfigError
from miaudit.studies.cache import train_key
from miaudit.studies.schema import RunSpec, parse_config
from miaudit.training import hardware, native, tuning
from miaudit.training.batched import train_batched, train_many
from miaudit.training.dp import dp_schedule
from miaudit.training.engine import dp_stacked, orchestration, stacked
from miaudit.training.engine.planning import ChunkJob, default_memory_budget
from miaudit.training.engine.stack import Stack
from miaudit.training.executors import InProcessExecutor
from miaudit.training.networks import MLPParams
from miaudit.training.specs import DEVICES, ModelSpec, TrainSpec
from miaudit.training.trainer import train_models

SIMPLE = ModelSpec(n_features=64, n_classes=10, hidden=(32,))
DEEP = ModelSpec(n_features=64, n_classes=10, hidden=(48, 24), dropout=0.3)
BASE = TrainSpec(epochs=2, batch_size=32, lr=3e-3, precision="f32", engine="batched")
RECIPES = {
    "f32-simple": (SIMPLE, BASE),
    "bf16-simple": (SIMPLE, dataclasses.replace(BASE, precision="bf16")),
    "f32-dropout-smooth": (DEEP, dataclasses.replace(BASE, label_smoothing=0.1, weight_decay=1e-3)),
    "bf16-dropout": (DEEP, dataclasses.replace(BASE, precision="bf16")),
    "dp": (
        ModelSpec(n_features=64, n_classes=10, hidden=(32,), dropout=0.2),
        dataclasses.replace(BASE, precision="auto", dp_noise_multiplier=1.0, max_grad_norm=1.0),
    ),
}
#: sha256 (first 32 hex digits) of the weights of three models per recipe, trained by the engine before it
#: had devices (commit 342b1d2), under the fixed rules, on the machine below; with the compiled Adam step
#: and with PyTorch's (MIAUDIT_NATIVE=0); "dp" re-recorded when DP-SGD's noise became counter-based
#: (miaudit.training.noise), which changed every DP model's noise
GOLDEN_MACHINE = {"cpu": "AMD EPYC", "flags": "6a93d771884cba54", "torch": "2.13.0+cpu"}
GOLDEN = {
    "compiled": {
        "f32-simple": "a9bc5784f7cb511a613793bb81d618db",
        "bf16-simple": "30a942d920a401b07be08f6615a4d81b",
        "f32-dropout-smooth": "46903f1aa115030e17153d918c937e00",
        "bf16-dropout": "88843ef33bf4637ae5bc4a25482cdd60",
        "dp": "22843aa4fa93f9c658dc8dc655d294f6",
    },
    "torch": {
        "f32-simple": "8951e4ab4b262914f2915cbf1cff96a1",
        "bf16-simple": "30ffe74ce35829b9ef075fc0044075ce",
        "f32-dropout-smooth": "d3fc7780df3debfea1aa6d09f97bf71c",
        "bf16-dropout": "faecbc3f09041d5abb869993663cb51d",
        "dp": "b769d75162baac0eb7dfa1ba88a7e927",
    },
}
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no CUDA GPU here (torch.cuda.is_available() is False)")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(3)
    return X, y, [rng.choice(1200, n, replace=False) for n in (200, 170, 230)]


def _digest(models: list[MLPParams]) -> str:
    h = hashlib.sha256()
    for p in models:
        for a in p.weights + p.biases:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:32]


def _train(data, model: ModelSpec, train: TrainSpec) -> list[MLPParams]:
    X, y, sets = data
    return train_batched(X, y, sets, seeds=[5, 6, 7], model=model, train=train, executor=InProcessExecutor(n_workers=1))


def _golden_machine() -> bool:
    flags = hashlib.sha256(" ".join(sorted(hardware.cpu_flags())).encode()).hexdigest()[:16]
    here = {"cpu": hardware.cpu_model(), "flags": flags, "torch": torch.__version__}
    return here == GOLDEN_MACHINE and hardware.native_isa() == "native"


# ---------------------------------------------------------------------------------------------
# the CPU: explicit device="cpu" is the engine as it was
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_explicit_cpu_device_gives_the_engines_weights_of_before_bitwise(data, name) -> None:
    model, train = RECIPES[name]
    explicit = _train(data, model, dataclasses.replace(train, device="cpu"))
    assert _digest(explicit) == _digest(_train(data, model, train))  # the default is the CPU
    if not _golden_machine():
        pytest.skip(f"golden weights were recorded on {GOLDEN_MACHINE}; this machine differs")
    adam = "compiled" if native.load_native() is not None else "torch"
    assert _digest(explicit) == GOLDEN[adam][name]


def test_cpu_keys_and_recipes_are_unchanged_and_a_gpus_differ() -> None:
    assert TrainSpec(device="cpu") == TrainSpec()
    d = TrainSpec().to_dict()
    assert "device" not in d and set(d) == {"epochs", "batch_size", "lr", "weight_decay", "precision", "engine"}
    gpu = TrainSpec(device="cuda")  # a recipe names a device without needing it here
    assert gpu.to_dict() == {**d, "device": "cuda"}
    assert "device" not in TrainSpec(device="cuda", early_stopping_patience=2).to_dict()  # the loop: CPU
    cpu_key, gpu_key = train_key(TrainSpec(), SIMPLE), train_key(gpu, SIMPLE)
    assert "device" not in cpu_key and gpu_key["device"] == "cuda" and gpu_key["precision"] == "f32"


def test_the_experiment_passes_the_runs_device_into_every_recipe() -> None:
    from miaudit.studies.experiment import Experiment
    from miaudit.studies.schema import Setting

    st = Setting()
    assert Experiment(RunSpec(), cache=None).train_spec(st).device == "cpu"
    # the name only is validated when the RunSpec is built directly; the engine checks the GPU when it trains
    run = RunSpec.model_construct(**{**RunSpec().model_dump(), "device": "cuda"})
    assert Experiment(run, cache=None).train_spec(st).device == "cuda"


def test_memory_budget_on_the_cpu_is_the_hosts() -> None:
    assert default_memory_budget(torch.device("cpu")) == default_memory_budget()


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_resolve_device(no_gpu) -> None:
    assert hardware.resolve_device("cpu") == torch.device("cpu")
    assert DEVICES == ("cpu", "cuda", "mps")
    with pytest.raises(ConfigError, match=r"device must be one of 'cpu', 'cuda', 'mps'; got 'tpu'"):
        hardware.resolve_device("tpu")
    with pytest.raises(ConfigError, match=r"device 'cuda' needs an NVIDIA GPU .* use --device cpu"):
        hardware.resolve_device("cuda")
    with pytest.raises(ConfigError, match=r"device 'mps' needs Apple silicon .* use --device cpu"):
        hardware.resolve_device("mps")


def test_recipe_errors() -> None:
    with pytest.raises(ConfigError, match=r"device must be one of 'cpu', 'cuda', 'mps'; got 'gpu'"):
        TrainSpec(device="gpu")
    with pytest.raises(ConfigError, match=r"the plain loop \(engine 'loop'\) trains on the CPU; device 'cuda' needs"):
        TrainSpec(device="cuda", engine="loop")


def test_training_on_a_missing_gpu_fails_before_any_work(no_gpu, data, monkeypatch) -> None:
    X, y, sets = data

    def no_chunks(job):
        raise AssertionError("no chunk may train")

    monkeypatch.setattr(orchestration, "train_chunk", no_chunks)
    for device in ("cuda", "mps"):
        train = dataclasses.replace(BASE, device=device)
        with pytest.raises(ConfigError, match=f"device '{device}' needs"):
            train_batched(X, y, sets, seeds=[0, 1, 2], model=SIMPLE, train=train)
        with pytest.raises(ConfigError, match=f"device '{device}' needs"):
            train_models(X, y, sets, seeds=[0, 1, 2], model=SIMPLE, train=train)


def test_run_spec_errors(no_gpu, monkeypatch) -> None:
    assert parse_config(RunSpec, {}).device == "cpu"
    with pytest.raises(ConfigError, match=r"device: unknown device 'tpu'; choose one of: cpu, cuda, mps"):
        parse_config(RunSpec, {"device": "tpu"})
    with pytest.raises(ConfigError, match=r"device: device 'cuda' needs an NVIDIA GPU"):
        parse_config(RunSpec, {"device": "cuda"})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the GPU check passes; the loop rule refuses
    with pytest.raises(ConfigError, match=r"engine 'loop' trains on the CPU; device 'cuda' needs engine"):
        parse_config(RunSpec, {"device": "cuda", "engine": "loop"})
    assert parse_config(RunSpec, {"device": "cuda"}).device == "cuda"


def test_the_cli_takes_device_and_refuses_a_missing_gpu(no_gpu) -> None:
    from miaudit.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["attack", "--dataset", "digits", "--device", "cuda"])
    assert res.exit_code != 0 and "device 'cuda' needs an NVIDIA GPU" in res.output, res.output
    res = runner.invoke(app, ["reproduce", "--studies", "1", "--device", "tpu", "--no-report"])
    assert res.exit_code != 0 and "unknown device 'tpu'" in res.output, res.output


# ---------------------------------------------------------------------------------------------
# the path on a GPU: the rules, never timed
# ---------------------------------------------------------------------------------------------


def test_gpu_recipes_are_not_tuned(monkeypatch) -> None:
    monkeypatch.setenv(tuning.TUNING_ENV, "on")

    def never(c, s):
        raise AssertionError("a GPU recipe must not be timed")

    for train in (TrainSpec(device="cuda"), TrainSpec(device="mps", dp_noise_multiplier=1.0)):
        choice = tuning.choose_path(model=SIMPLE, train=train, measure=never)
        assert (choice.precision, choice.path, choice.adam, choice.max_chunk, choice.source) == (
            "f32", "stacked", "torch", tuning.DEVICE_MAX_CHUNK, "rules",
        )  # fmt: skip
        assert f"device {train.device!r}" in choice.reason and "not tuned" in choice.reason
        assert tuning.tune(model=SIMPLE, train=train, measure=never) == choice
    assert tuning.choose_path(model=SIMPLE, train=TrainSpec(device="cuda", precision="bf16")).precision == "bf16"
    described = tuning.describe_choice(model=SIMPLE, train=TrainSpec(device="cuda"))
    assert described["device"] == "cuda" and described["adam"] == "torch"
    assert "device" not in tuning.describe_choice(model=SIMPLE, train=TrainSpec(precision="f32"))


# ---------------------------------------------------------------------------------------------
# placement: every tensor of a step on the device, checked on a fake device
# ---------------------------------------------------------------------------------------------


class _AllFinite:
    """Stands for Stack.finite's result under FakeTensorMode (which has no values to test)."""

    def all(self) -> bool:
        return True

    def __getitem__(self, a: int) -> bool:
        return True


@pytest.mark.parametrize(
    "precision, dp, dropout",
    [("f32", False, 0.0), ("bf16", False, 0.2), ("f32", False, 0.2), ("f32", True, 0.2), ("f32", True, 0.0)],
)
def test_every_step_runs_on_the_jobs_device(monkeypatch, precision, dp, dropout) -> None:
    """On a fake device any operation that mixes it with the CPU raises: the CPU-drawn parts must be moved."""
    spec = ModelSpec(n_features=20, n_classes=5, hidden=(16, 8), dropout=dropout)
    extra = {"dp_noise_multiplier": 1.0} if dp else {}
    train = TrainSpec(epochs=2, batch_size=4, precision=precision, label_smoothing=0.1, **extra)
    sets = (np.arange(10), np.arange(5, 18), np.arange(7))
    exported: list[torch.device] = []
    monkeypatch.setattr(Stack, "finite", lambda self: _AllFinite())
    monkeypatch.setattr(Stack, "export", lambda self, spec, k: exported.append(self.P.device))
    block = dp_stacked._block
    masks = dp_stacked._dp_dropout_masks

    def real(fn):  # the CPU-side draws need values (batch widths): run them outside the fake mode
        def call(*args, **kwargs):
            with unset_fake_temporarily():
                return fn(*args, **kwargs)

        return call

    monkeypatch.setattr(dp_stacked, "_block", real(block))
    monkeypatch.setattr(dp_stacked, "_dp_dropout_masks", real(masks))
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    with FakeTensorMode(allow_non_fake_inputs=True):
        job = ChunkJob(
            pool=torch.zeros(50, 21, dtype=dtype),
            labels=torch.zeros(50, dtype=torch.int64),
            train_sets=sets,
            seeds=(1, 2, 3),
            positions=(0, 1, 2),
            model=spec,
            train=train,
            precision=precision,
            adam="compiled",  # on a device other than the CPU the stack uses PyTorch's fused Adam
            dp=tuple(dp_schedule(train, len(s)) for s in sets) if dp else None,
            device="lazy:0",
        )
        (dp_stacked.train_stacked_dp if dp else stacked.train_stacked)(job)
    assert exported == [torch.device("lazy:0")] * 3


def test_a_cpu_buffer_in_a_device_step_would_be_caught(monkeypatch) -> None:
    """The fake-device check above can fail: one buffer left on the CPU makes the step raise."""
    original = stacked.StepPlan.__init__

    def misplaced(self, stack, pool, batch, train, dropout, *, adam="compiled"):
        original(self, stack, pool, batch, train, dropout, adam=adam)
        self.p = torch.empty(self.p.shape, device="cpu")

    monkeypatch.setattr(stacked.StepPlan, "__init__", misplaced)
    with pytest.raises(Exception, match="same device"):
        test_every_step_runs_on_the_jobs_device(monkeypatch, "f32", False, 0.0)


# ---------------------------------------------------------------------------------------------
# a real GPU (skipped without one)
# ---------------------------------------------------------------------------------------------


def _max_diff(a: list[MLPParams], b: list[MLPParams]) -> float:
    """The largest absolute difference of any weight or bias between two lists of models."""
    return max(
        float(np.abs(x - z).max())
        for p, q in zip(a, b, strict=True)
        for x, z in zip(p.weights + p.biases, q.weights + q.biases, strict=True)
    )


@needs_cuda
@pytest.mark.parametrize("name", ["f32-simple", "f32-dropout-smooth", "dp"])
def test_cuda_gives_the_cpus_weights_to_float_rounding(data, name) -> None:
    model, train = RECIPES[name]
    cpu = _train(data, model, train)
    gpu = _train(data, model, dataclasses.replace(train, device="cuda"))
    for p in gpu:  # weights come back to the CPU, as numpy arrays
        assert all(isinstance(a, np.ndarray) for a in p.weights + p.biases)
    # same initialisation, minibatches, masks and noise: only rounding differs (cuBLAS vs MKL sums); a
    # different minibatch or mask would move weights by about the learning rate (3e-3) per step
    assert _max_diff(cpu, gpu) < 5e-4, _max_diff(cpu, gpu)
    X = data[0]
    agree = [np.mean(a.logits(X).argmax(1) == b.logits(X).argmax(1)) for a, b in zip(cpu, gpu, strict=True)]
    assert min(agree) > 0.99
    # the same seed gives the same numbers on the GPU
    assert _digest(gpu) == _digest(_train(data, model, dataclasses.replace(train, device="cuda")))


@needs_cuda
def test_cuda_bf16_and_train_many(data, caplog) -> None:
    X, y, sets = data
    train = dataclasses.replace(BASE, precision="bf16", device="cuda")
    with caplog.at_level(logging.INFO, logger="miaudit.training.engine.orchestration"):
        batch = train_many(X, y, sets, seeds=[5, 6, 7], model=DEEP, train=train)
    assert batch.precision == "bf16" and "on cuda" in caplog.text
    cpu = _train(data, DEEP, dataclasses.replace(train, device="cpu"))
    assert _max_diff(cpu, list(batch.models)) < 1e-2  # bf16 products: 8-bit rounding of activations, two epochs
    assert float(batch.train_accuracy.min()) > 0.5
