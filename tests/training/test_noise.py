"""DP-SGD's noise stream: Philox's known answers, compiled == numpy bit for bit, a Gaussian, independent streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from miaudit.errors import TrainingError
from miaudit.studies.cache import train_key
from miaudit.training import native
from miaudit.training.noise import NoiseStream, gaussian_numpy, noise_stream, philox4x32_10
from miaudit.training.specs import TrainSpec

#: Random123's published known-answer vectors for Philox4x32-10 (its tests/kat_vectors): counter, key, output
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]
needs_kernel = pytest.mark.skipif(native.load_gauss() is None, reason="the compiled noise kernel does not build here")


@pytest.mark.parametrize(("counter", "key", "want"), KAT)
def test_philox_numpy_gives_random123s_known_answers(counter, key, want) -> None:
    got = philox4x32_10(tuple(np.array([c]) for c in counter), key)
    assert tuple(int(w[0]) for w in got) == want


@needs_kernel
@pytest.mark.parametrize(("counter", "key", "want"), KAT)
def test_philox_compiled_gives_random123s_known_answers(counter, key, want) -> None:
    assert native.load_gauss().philox(counter, key) == want


@needs_kernel
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 255, 256, 257, 1023, 101_770])
@pytest.mark.parametrize("step", [0, 1, 46, 2**32 + 3])
def test_compiled_fill_equals_numpy_bit_for_bit(n, step) -> None:
    stream = noise_stream(12345)
    out = torch.full((n,), float("nan"))
    stream.fill(out, step, 0.37)
    want = gaussian_numpy(n, stream.key, step, 0.37)
    np.testing.assert_array_equal(out.numpy().view(np.uint32), want.view(np.uint32))


def test_numpy_path_is_used_without_the_kernel_and_gives_the_same_values(monkeypatch) -> None:
    stream = noise_stream(3)
    with_kernel = torch.empty(1001)
    stream.fill(with_kernel, 7, 2.0)
    monkeypatch.setattr(native, "load_gauss", lambda: None)
    call = stream.bind(torch.empty(1001), 2.0)
    assert call.native is None
    call(7)
    np.testing.assert_array_equal(call.out.numpy(), with_kernel.numpy())


def test_values_are_a_pure_function_of_key_step_and_index() -> None:
    a = gaussian_numpy(1000, 99, 5)
    np.testing.assert_array_equal(gaussian_numpy(400, 99, 5), a[:400])  # a prefix is the same values
    np.testing.assert_array_equal(gaussian_numpy(1000, 99, 5), a)  # no state between calls
    assert not np.array_equal(gaussian_numpy(1000, 99, 6)[:10], a[:10])
    assert not np.array_equal(gaussian_numpy(1000, 98, 5)[:10], a[:10])
    np.testing.assert_array_equal(gaussian_numpy(1000, 99, 5, 3.0), a * np.float32(3.0))


def test_values_are_standard_normal() -> None:
    """800,000 values over 40 steps: Kolmogorov-Smirnov, moments and tail frequencies of N(0, 1)."""
    z = np.concatenate([gaussian_numpy(20_000, noise_stream(11).key, t) for t in range(40)]).astype(np.float64)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    n = len(z)
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / n)
    for c in (1.0, 2.0, 3.0, 4.0):
        p = 2 * stats.norm.sf(c)
        assert abs(np.mean(np.abs(z) > c) - p) < 5 * np.sqrt(p * (1 - p) / n), c
    assert np.abs(z).max() <= np.sqrt(48 * np.log(2)) + 1e-5  # 24-bit uniforms: at most 5.77


def test_the_cos_and_sin_halves_are_uncorrelated_and_streams_independent() -> None:
    z = gaussian_numpy(400_000, noise_stream(5).key, 0).astype(np.float64)
    pairs = z.reshape(-1, 2)  # R cos a, R sin a of one uniform pair
    assert abs(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]) < 5 / np.sqrt(len(pairs))
    # radius and angle: the squared radius of a pair is chi-square with 2 degrees of freedom
    assert stats.kstest((pairs**2).sum(1), "chi2", args=(2,)).pvalue > 1e-3
    lag = z[:-4] * z[4:]  # next block, same position
    assert abs(lag.mean()) < 5 / np.sqrt(len(lag))
    other = gaussian_numpy(400_000, noise_stream(6).key, 0).astype(np.float64)
    assert abs(np.corrcoef(z, other)[0, 1]) < 5 / np.sqrt(len(z))
    next_step = gaussian_numpy(400_000, noise_stream(5).key, 1).astype(np.float64)
    assert abs(np.corrcoef(z, next_step)[0, 1]) < 5 / np.sqrt(len(z))


@pytest.mark.parametrize(
    "bad",
    [torch.empty(4, dtype=torch.float64), torch.empty(2, 3), torch.empty(8)[::2], [0.0, 1.0]],
    ids=["float64", "2-d", "strided", "list"],
)
def test_a_wrong_buffer_is_refused_with_what_it_must_be(bad) -> None:
    with pytest.raises(TrainingError, match="contiguous 1-D float32 CPU tensor"):
        NoiseStream(key=1).bind(bad, 1.0)


def test_a_negative_step_is_refused() -> None:
    with pytest.raises(TrainingError, match="step must be an int >= 0"):
        NoiseStream(key=1).fill(torch.empty(4), -1, 1.0)


def test_dp_models_are_keyed_by_the_noise_stream_and_others_are_not() -> None:
    assert "dp_noise" in train_key(TrainSpec(dp_noise_multiplier=1.0))
    assert "dp_noise" not in train_key(TrainSpec())
