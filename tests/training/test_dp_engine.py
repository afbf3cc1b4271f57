"""DP-SGD in the engines: one step equal to Opacus's, stacked equal to the loop, seeds, padding, the record.

Tolerances (float32): one engine step's clipped, scaled gradient equals Opacus's ``p.grad`` to 1e-5
of the layer gradient's largest entry (sums over ~30 examples in another order: float32 rounding);
the weights after three DP-Adam steps agree to 1e-6 (Adam moves each weight by about lr = 1e-3 a
step); per-example norms equal those of materialised per-example gradients to a relative 1e-5; the
stacked path and the plain loop, drawing the same samples and noise, agree to 1e-4 after a short
training (different summation orders, compounded over steps).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from miaudit.errors import TrainingError
from miaudit.seeding import torch_generator
from miaudit.training.batched import train_batched
from miaudit.training.dp import DPSchedule, epsilon_spent
from miaudit.training.engine.dp_stacked import DPStepPlan, train_stacked_dp
from miaudit.training.engine.planning import ChunkJob
from miaudit.training.engine.stack import Stack, layer_layout
from miaudit.training.engine.stacked import neg_targets
from miaudit.training.executors import single_threaded_torch
from miaudit.training.networks import MLPParams, build_module, init_params
from miaudit.training.noise import NoiseStream
from miaudit.training.specs import ModelSpec, TrainSpec
from miaudit.training.trainer import train_models, train_one

opacus = pytest.importorskip("opacus")

ONE_HIDDEN = ModelSpec(n_features=64, n_classes=10, hidden=(32,))
THREE_HIDDEN = ModelSpec(n_features=64, n_classes=10, hidden=(24, 16, 12))


def _max_diff(a: MLPParams, b: MLPParams) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True))


def _assert_same(a: MLPParams, b: MLPParams) -> None:
    for x, y in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------------------------
# one step of the stacked path, driven directly
# ---------------------------------------------------------------------------------------------


class OneModel:
    """The stacked path's DP-SGD step for one model on batches we choose."""

    def __init__(self, spec: ModelSpec, X: np.ndarray, y: np.ndarray, *, seed: int, train: TrainSpec, expected: int):
        self.spec, self.train = spec, train
        self.init = init_params(spec, torch_generator(seed, "train"))
        self.stack = Stack.initial(spec, layer_layout(spec, "f32"), [self.init])
        self.pool = torch.cat([torch.from_numpy(X), torch.ones(len(X), 1)], dim=1)
        self.pool_sq = self.pool.square().sum(1)
        self.labels = torch.from_numpy(y)
        self.schedule = DPSchedule(n=len(X), sample_rate=0.5, steps=10, expected_batch_size=expected,
                                   noise_multiplier=0.0, max_grad_norm=train.max_grad_norm, delta=1e-3,
                                   accountant="rdp")  # fmt: skip

    def step(self, rows: np.ndarray, *, pad_rows: np.ndarray | None = None) -> DPStepPlan:
        """One step on ``rows`` (pool rows), with ``pad_rows`` appended as zero-weight padding."""
        pad = np.asarray([] if pad_rows is None else pad_rows, dtype=np.int64)
        ix = torch.from_numpy(np.concatenate([rows, pad]).astype(np.int64))
        width = len(ix)
        w = torch.zeros(1, 1, width)
        w[..., : len(rows)] = 1.0
        negy = neg_targets(self.labels[ix].view(1, 1, width), w, self.spec.n_classes, self.train.label_smoothing)[0]
        plan = DPStepPlan(self.stack, self.pool, self.pool_sq, width, self.train, self.spec, [self.schedule])
        plan.dp_step(ix, negy, w[0].unsqueeze(1), [], [NoiseStream(key=0)], 0)
        return plan

    def grads(self) -> list[np.ndarray]:
        """The last step's gradient, as (weight (in, out), bias) per layer."""
        out = []
        for lay in self.stack.layers:
            g = self.stack.cgrad_w(lay.i)[0]
            g = g.T if lay.last else g
            if lay.folded:
                out += [g[:-1].numpy().copy(), g[-1].numpy().copy()]
            else:
                out += [g.numpy().copy(), self.stack.cgrad_b(lay.i)[0].reshape(-1).numpy().copy()]
        return out

    def params(self) -> MLPParams:
        return self.stack.export(self.spec, 0)


def _opacus_steps(
    spec: ModelSpec, init, X: np.ndarray, y: np.ndarray, batches: list[np.ndarray], *, train: TrainSpec, expected: int
) -> tuple[list[np.ndarray], MLPParams]:
    """Opacus's DP-Adam (GradSampleModule + DPOptimizer, no noise) from the same weights on the same batches."""
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    module = build_module(spec)
    linears = [m for m in module if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for lin, w, b in zip(linears, init[0], init[1], strict=True):
            lin.weight.copy_(w.T)
            lin.bias.copy_(b)
    gsm = GradSampleModule(module)
    opt = DPOptimizer(
        torch.optim.Adam(module.parameters(), lr=train.lr),
        noise_multiplier=0.0,
        max_grad_norm=train.max_grad_norm,
        expected_batch_size=expected,
    )
    for rows in batches:
        opt.zero_grad()
        out = gsm(torch.from_numpy(X[rows]))
        F.cross_entropy(out, torch.from_numpy(y[rows]), label_smoothing=train.label_smoothing).backward()
        opt.step()
    grads = [t for lin in linears for t in (lin.weight.grad.T.numpy().copy(), lin.bias.grad.numpy().copy())]
    from miaudit.training.networks import params_from_module

    return grads, params_from_module(module, spec)


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
@pytest.mark.parametrize("spec", [ONE_HIDDEN, THREE_HIDDEN], ids=["1-hidden", "3-hidden"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_noise_off_steps_equal_opacus_dp_adam(digits, spec: ModelSpec, smoothing: float) -> None:
    X, y = digits
    train = TrainSpec(lr=1e-3, dp_noise_multiplier=0.0, max_grad_norm=0.1, label_smoothing=smoothing)
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(X), size, replace=False) for size in (29, 40, 33)]  # Poisson-like, unequal sizes
    expected = 32
    engine = OneModel(spec, X, y, seed=7, train=train, expected=expected)
    plans = [engine.step(rows) for rows in batches]
    grads, ref = _opacus_steps(spec, engine.init, X, y, batches, train=train, expected=expected)
    # clipping bites: most examples' gradients are longer than max_grad_norm
    assert float((plans[0].norms[0] > 0.1).float().mean()) > 0.5
    for mine, theirs in zip(engine.grads(), grads, strict=True):
        scale = float(np.abs(theirs).max())
        assert scale > 0
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-5 * scale)
    assert _max_diff(engine.params(), ref) < 1e-6
    start = MLPParams(spec=spec, weights=tuple(w.numpy() for w in engine.init[0]),
                      biases=tuple(b.numpy() for b in engine.init[1]))  # fmt: skip
    assert _max_diff(engine.params(), start) > 1e-3  # the steps moved the weights


@pytest.mark.parametrize("spec", [ONE_HIDDEN, THREE_HIDDEN, ModelSpec(n_features=64, n_classes=10, hidden=())])
def test_engine_norms_equal_materialised_per_example_gradients(digits, spec: ModelSpec) -> None:
    X, y = digits
    train = TrainSpec(dp_noise_multiplier=0.0, max_grad_norm=0.1, label_smoothing=0.1)
    engine = OneModel(spec, X, y, seed=3, train=train, expected=16)
    rows = np.arange(100, 121)
    ws, bs = engine.init
    norms = engine.step(rows).norms[0]
    n_layers = len(ws)

    def loss(params, x, t):
        h = x
        for i in range(n_layers):
            h = h @ params[2 * i] + params[2 * i + 1]
            if i < n_layers - 1:
                h = torch.relu(h)
        return F.cross_entropy(h.unsqueeze(0), t.unsqueeze(0), label_smoothing=0.1)

    params = tuple(p for pair in zip(ws, bs, strict=True) for p in pair)
    grads = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))(
        params, torch.from_numpy(X[rows]), torch.from_numpy(y[rows])
    )
    explicit = torch.stack([g.reshape(len(rows), -1).norm(dim=1) for g in grads], 1).norm(dim=1)
    torch.testing.assert_close(norms, explicit, rtol=1e-5, atol=1e-7)


def test_padding_rows_contribute_nothing(digits) -> None:
    X, y = digits
    train = TrainSpec(dp_noise_multiplier=0.0, max_grad_norm=0.5)
    rows = np.arange(10, 40)
    plain = OneModel(THREE_HIDDEN, X, y, seed=1, train=train, expected=30)
    padded = OneModel(THREE_HIDDEN, X, y, seed=1, train=train, expected=30)
    plain.step(rows)
    plan = padded.step(rows, pad_rows=np.arange(500, 510))  # real records, zero weight
    assert torch.equal(plan.norms[0, 30:], torch.zeros(10)) and bool((plan.norms[0, :30] > 0).all())
    for a, b in zip(plain.grads(), padded.grads(), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)
    assert _max_diff(plain.params(), padded.params()) < 1e-7


# ---------------------------------------------------------------------------------------------
# whole trainings: the stacked path equals the plain loop; seeds; independence; the record
# ---------------------------------------------------------------------------------------------

CASES = {
    "1-hidden, noise off, clipping": (ONE_HIDDEN, {"dp_noise_multiplier": 0.0, "max_grad_norm": 0.1}),
    "1-hidden, noise, smoothing": (ONE_HIDDEN, {"dp_noise_multiplier": 1.0, "label_smoothing": 0.1}),
    "3-hidden, dropout, noise": (dataclasses.replace(THREE_HIDDEN, dropout=0.2), {"dp_noise_multiplier": 0.7}),
    "no hidden layer, noise": (ModelSpec(n_features=64, n_classes=10, hidden=()), {"dp_noise_multiplier": 1.0}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_stacked_path_equals_the_plain_loop(digits, case: str) -> None:
    spec, kw = CASES[case]
    X, y = digits
    recipe = {"epochs": 2, "batch_size": 32, "lr": 3e-3, "precision": "f32", **kw}  # f32: the stacked path
    sets = [np.arange(500), np.arange(300, 1000), np.arange(7)]  # 7 records: sample rate 1
    stacked = train_batched(X, y, sets, seeds=[0, 1, 2], model=spec, train=TrainSpec(engine="batched", **recipe))
    with single_threaded_torch():
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
        loop = [train_one(Xt, yt, s, seed=k, model=spec, train=TrainSpec(engine="loop", **recipe)) for k, s in
                enumerate(sets)]  # fmt: skip
    for a, b in zip(stacked, loop, strict=True):
        assert _max_diff(a, b) < 1e-4
        assert a.privacy == b.privacy and a.privacy is not None
    assert _max_diff(stacked[0], stacked[1]) > 1e-2


def test_empty_batches_train_on_noise_alone(digits) -> None:
    X, y = digits
    # batch size 1 on 400 records: q = 1/400, most steps sample nothing (only noise moves the weights)
    recipe = {"epochs": 1, "batch_size": 1, "lr": 1e-3, "dp_noise_multiplier": 1.0, "precision": "f32"}
    (stacked,) = train_batched(X, y, [np.arange(400)], seeds=[4], model=ONE_HIDDEN, train=TrainSpec(**recipe))
    with single_threaded_torch():
        loop = train_one(torch.from_numpy(X), torch.from_numpy(y), np.arange(400), seed=4, model=ONE_HIDDEN,
                         train=TrainSpec(engine="loop", **recipe))  # fmt: skip
    assert stacked.privacy is not None and stacked.privacy.steps == 400
    assert _max_diff(stacked, loop) < 1e-4


def test_same_seed_same_weights_other_seed_other_weights(digits) -> None:
    X, y = digits
    train = TrainSpec(epochs=1, batch_size=32, dp_noise_multiplier=1.0)
    s = np.arange(400)
    a = train_batched(X, y, [s, s, s], seeds=[5, 5, 6], model=ONE_HIDDEN, train=train)
    b = train_batched(X, y, [s], seeds=[5], model=ONE_HIDDEN, train=train)
    _assert_same(a[0], a[1])  # one stack, the same seed: each model its own streams, the same numbers
    assert _max_diff(a[0], a[2]) > 1e-2  # the same data, another seed: other samples and noise
    assert _max_diff(a[0], b[0]) < 1e-6  # alone or in a stack (padding widths differ: rounding at most)
    quiet = train_batched(
        X, y, [s], seeds=[5], model=ONE_HIDDEN, train=dataclasses.replace(train, dp_noise_multiplier=0)
    )
    assert _max_diff(b[0], quiet[0]) > 1e-2  # the noise moves the weights


def test_a_models_training_does_not_depend_on_its_neighbours(digits) -> None:
    X, y = digits
    spec = dataclasses.replace(THREE_HIDDEN, dropout=0.25)
    train = TrainSpec(epochs=2, batch_size=16, dp_noise_multiplier=0.5)
    mine = np.arange(200, 450)
    together = train_batched(X, y, [np.arange(900), mine, np.arange(30)], seeds=[1, 2, 3], model=spec, train=train)
    (alone,) = train_batched(X, y, [mine], seeds=[2], model=spec, train=train)
    assert _max_diff(together[1], alone) < 1e-5


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
@pytest.mark.parametrize("engine", ["batched", "loop"])
def test_recorded_epsilon_is_opacus_s_and_meets_the_target(digits, accountant: str, engine: str) -> None:
    from opacus.accountants import create_accountant

    X, y = digits
    train = TrainSpec(epochs=2, batch_size=64, dp_epsilon=4.0, dp_accountant=accountant, engine=engine)
    (m,) = train_models(X, y, [np.arange(640)], seeds=[0], model=ONE_HIDDEN, train=train)
    rec = m.privacy
    assert rec is not None
    assert (rec.sample_rate, rec.steps, rec.delta, rec.accountant) == (0.1, 20, 1 / 640, accountant)
    ref = create_accountant(mechanism=accountant)
    ref.history = [(rec.noise_multiplier, rec.sample_rate, rec.steps)]
    assert rec.epsilon == pytest.approx(ref.get_epsilon(delta=rec.delta), rel=1e-9)
    assert 4.0 - 0.011 <= rec.epsilon <= 4.0
    assert rec.epsilon == epsilon_spent(noise_multiplier=rec.noise_multiplier, sample_rate=0.1, steps=20,
                                        delta=1 / 640, accountant=accountant)  # fmt: skip


def test_models_without_dp_carry_no_record(digits) -> None:
    X, y = digits
    (m,) = train_models(X, y, [np.arange(100)], seeds=[0], model=ONE_HIDDEN, train=TrainSpec(epochs=1))
    assert m.privacy is None


def test_dp_trains_a_useful_model(digits) -> None:
    X, y = digits
    train = TrainSpec(epochs=10, batch_size=32, lr=3e-3, dp_epsilon=8.0)
    (m,) = train_batched(X, y, [np.arange(1200)], seeds=[0], model=ONE_HIDDEN, train=train)
    assert m.accuracy(X[1200:], y[1200:]) > 0.8


def test_divergence_raises_training_error(digits) -> None:
    X = np.full((64, 64), 3e38, dtype=np.float32)  # finite, but products overflow
    y = np.arange(64) % 10
    train = TrainSpec(epochs=1, batch_size=8, dp_noise_multiplier=1.0)
    with pytest.raises(TrainingError, match="non-finite weights.*DP-SGD steps"):
        train_batched(X, y, [np.arange(64)], seeds=[0], model=ONE_HIDDEN, train=train)
    with pytest.raises(TrainingError, match="non-finite weights.*DP-SGD steps"):
        train_one(torch.from_numpy(X), torch.from_numpy(y), np.arange(64), seed=0, model=ONE_HIDDEN,
                  train=dataclasses.replace(train, engine="loop"))  # fmt: skip


def test_chunk_without_schedules_is_refused() -> None:
    job = ChunkJob(pool=torch.zeros(4, 65), labels=torch.zeros(4, dtype=torch.int64), train_sets=(np.arange(4),),
                   seeds=(0,), positions=(0,), model=ONE_HIDDEN, train=TrainSpec(dp_noise_multiplier=1.0),
                   precision="f32")  # fmt: skip
    with pytest.raises(TrainingError, match=r"needs the chunk's DP-SGD schedules \(ChunkJob.dp\)"):
        train_stacked_dp(job)


def test_workers_and_chunks_do_not_change_the_models(digits) -> None:
    import pickle

    from miaudit.training.engine.orchestration import train_batched as engine_train
    from miaudit.training.executors import InProcessExecutor

    X, y = digits
    train = TrainSpec(epochs=1, batch_size=32, dp_noise_multiplier=0.8)
    sets = [np.arange(k * 100, k * 100 + 300) for k in range(4)]
    one = engine_train(X, y, sets, seeds=[0, 1, 2, 3], model=ONE_HIDDEN, train=train,
                       executor=InProcessExecutor(n_workers=1))  # fmt: skip
    many = engine_train(X, y, sets, seeds=[0, 1, 2, 3], model=ONE_HIDDEN, train=train,
                        executor=InProcessExecutor(n_workers=2), memory_budget_bytes=2**20)  # fmt: skip
    for a, b in zip(one, many, strict=True):
        assert _max_diff(a, b) < 1e-6 and a.privacy == b.privacy
    # a chunk travels to a worker (a Dask cluster) by pickling, with its schedules
    job = ChunkJob(pool=torch.zeros(4, 65), labels=torch.zeros(4, dtype=torch.int64), train_sets=(np.arange(4),),
                   seeds=(0,), positions=(0,), model=ONE_HIDDEN, train=train, precision="f32",
                   dp=(DPSchedule(n=4, sample_rate=1.0, steps=1, expected_batch_size=4, noise_multiplier=0.8,
                                  max_grad_norm=1.0, delta=0.25, accountant="rdp"),))  # fmt: skip
    assert pickle.loads(pickle.dumps(job)).dp == job.dp


def test_bf16_is_refused_for_dp_recipes_the_fused_path_cannot_take(digits) -> None:
    from miaudit.errors import ConfigError

    X, y = digits
    train = TrainSpec(epochs=1, batch_size=32, dp_noise_multiplier=1.0, precision="bf16")
    with pytest.raises(ConfigError, match="precision 'bf16' with DP-SGD runs only on the fused"):
        train_batched(X, y, [np.arange(100)], seeds=[0], model=THREE_HIDDEN, train=train)
