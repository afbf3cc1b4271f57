"""The batched engine: K MLPs of one architecture trained together in one program.

Each model keeps everything of its own: training set (indices into the shared pool of records),
initialisation, minibatch order and dropout masks, all from its own seed. A model's weights do not
depend on K, on the chunking or on the number of workers; the same seed gives bitwise the same
weights on the same machine, path and precision.

One concern per module:

* :mod:`.orchestration`: the public entry points (:func:`train_batched`, :func:`train_many`);
  validation, the shared pool, chunks run on an executor (:func:`train_chunk`).
* :mod:`.planning`: memory per model, the budget, how models are cut into chunks (:class:`ChunkJob`).
* :mod:`.schedule`: each model's minibatches from its seed, short batches padded with zero-weight rows.
* :mod:`.stack` and :mod:`.stacked`: the stacked path. K models' weights stacked as
  ``(K, fan_in, fan_out)`` tensors; each step a handful of batched matrix products with a
  hand-written backward pass and one fused Adam update over a single flat buffer (the compiled step
  of ``_native/adam.c`` where it builds).
* :mod:`.dp_stacked`: DP-SGD on the stacked path (Poisson batches, per-example clipping from each
  layer's input and output gradient, each model's noise); the algorithm is :mod:`miaudit.training.dp`'s.
* :mod:`.fused`: the fused path. One-hidden-layer networks in bf16 on a CPU with AMX-BF16 or
  AVX512-BF16 train one model at a time on compiled steps (``_native/mlp1.c``) with its state close
  to the core; with DP-SGD too (the default for DP recipes it applies to, on AVX512-BF16).
* :mod:`.inference`: every model's probabilities on shared records (:func:`predict_proba_stacked`).

The compiled kernels' contracts (every argument's dtype and shape, ABI numbers, Adam constants) are
declared once beside their C files, in :mod:`miaudit.training._native`, and checked before any
pointer crosses into C.

Details that keep each model's training equal to training it alone
------------------------------------------------------------------
* Initialisation and minibatch order come from ``torch_generator(seed, "train")`` in the same order
  as :func:`miaudit.training.trainer.train_one`, so with dropout 0 a model gets exactly the plain
  loop's initial weights and batches. Dropout masks come from ``torch_generator(seed, "dropout", l)``
  (one stream per hidden layer), drawn in step order.
* Unequal set sizes are handled by **padding and masking rows, not whole steps**: model k runs its
  own ``epochs * ceil(n_k / batch_size)`` steps; when it has run them all it leaves the stack. It
  never receives an extra step.
* Every chunk runs single-threaded (see :mod:`miaudit.training.executors`).

Precision: ``f32`` computes everything in float32. ``bf16`` keeps float32 master weights, Adam
state and the gradients Adam reads, and runs the matrix products of the first layer (and of any
layer with at least 16,384 weights) in bfloat16: their inputs, weights, activations and gradients
are rounded to bf16 and accumulated in float32, as autocast would do. Small layers (the 128 x 10
output layer), the softmax and the loss gradient stay float32 (the fused path goes further: the
first layer's outputs and weight gradient stay float32 too, only its inputs, weights and output
gradients are bf16). ``auto`` is bf16 only on CPUs with native bf16 matrix units
(:func:`miaudit.training.hardware.native_bf16`); elsewhere bf16 still works, emulated and slower.

Devices: ``TrainSpec.device`` (``cpu``, ``cuda``, ``mps``) is where the stacked path (and DP-SGD on it)
computes, with the same code. Stacks, the pool and every step's buffers live there and Adam is
PyTorch's fused Adam (the compiled kernels and the fused path are CPU code); initial weights,
minibatch indices, dropout masks and DP-SGD's samples and noise are drawn on the CPU from the same
seeded generators and moved, so numbers agree across devices to float rounding; weights come back to
the CPU as :class:`~miaudit.training.networks.MLPParams`. ``device="cpu"`` is bitwise the engine of before.
"""

from miaudit.training.engine.inference import predict_proba_stacked
from miaudit.training.engine.orchestration import TrainedBatch, train_batched, train_chunk, train_many
from miaudit.training.engine.planning import (
    DEFAULT_BUDGET_CAP,
    DEFAULT_BUDGET_FRACTION,
    MAX_CHUNK,
    ChunkJob,
    bytes_per_model,
    default_memory_budget,
    plan_chunks,
)

__all__ = [
    "DEFAULT_BUDGET_CAP",
    "DEFAULT_BUDGET_FRACTION",
    "MAX_CHUNK",
    "ChunkJob",
    "TrainedBatch",
    "bytes_per_model",
    "default_memory_budget",
    "plan_chunks",
    "predict_proba_stacked",
    "train_batched",
    "train_chunk",
    "train_many",
]
