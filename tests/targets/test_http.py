"""HttpTarget against the reference service on 127.0.0.1, and against scripted transports for the failure modes."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

import miaudit.targets.http as http_mod
from miaudit.errors import BudgetExhaustedError, ConfigError, DataError, TargetError
from miaudit.targets import LocalTarget
from miaudit.targets.answer_cache import AnswerCache
from miaudit.targets.http import HttpTarget, retry_delay
from miaudit.targets.service import create_app
from miaudit.training.networks import MLPParams, build_module, params_from_module
from miaudit.training.specs import ModelSpec

TOKEN = "tok-9f8e7d6c5b4a"


def _params() -> MLPParams:
    spec = ModelSpec(n_features=64, n_classes=10, hidden=(8,))
    return params_from_module(build_module(spec), spec)


@pytest.fixture
def served(live_server):
    """A digits-shaped MLP behind the reference service (no token): (the served LocalTarget, the server)."""
    target = LocalTarget(_params())
    server = live_server(create_app(target, n_features=64, n_classes=10, input_shape=(8, 8)))
    return target, server


@pytest.fixture
def delays(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between attempts, recorded instead of slept."""
    waits: list[float] = []
    monkeypatch.setattr(http_mod, "_sleep", waits.append)
    return waits


_INFO = {
    "n_features": 2,
    "n_classes": 2,
    "classes": None,
    "input_shape": None,
    "output": "probabilities",
    "protocol": 1,
}


def _mock(predict: Callable[[httpx.Request], httpx.Response], *, info: dict | None = None) -> httpx.MockTransport:
    """A transport answering GET /v1/model with ``info`` and POST /v1/predict with ``predict``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/model":
            return httpx.Response(200, json=info or _INFO)
        return predict(request)

    return httpx.MockTransport(handler)


def _n_records(request: httpx.Request) -> int:
    return len(json.loads(request.content)["records"])


def _X(n: int) -> np.ndarray:
    """n distinct records of 2 features (equal records would be sent once)."""
    return np.arange(2 * n, dtype=np.float32).reshape(n, 2)


def _local(target: LocalTarget, X: np.ndarray, batch_size: int) -> np.ndarray:
    """The in-process answers, asked in the same batches as the service is (float32 matrix products may differ in
    their last bits with the batch's size)."""
    model = LocalTarget(target._model)
    return np.concatenate([model.predict_proba(X[i : i + batch_size]) for i in range(0, len(X), batch_size)])


def _uniform(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"probabilities": [[0.25, 0.75]] * _n_records(request)})


# -- against the real service -------------------------------------------------------------------------------------
def test_answers_are_exact_and_batched(served, digits) -> None:
    target, server = served
    X = digits[0][:50]
    with HttpTarget(server.url, batch_size=7, concurrency=1) as remote:
        assert (remote.n_features, remote.n_classes, remote.input_shape, remote.classes) == (64, 10, (8, 8), None)
        P = remote.predict_proba(X)
        np.testing.assert_array_equal(P, _local(target, X, 7))  # float64 exact through JSON
        assert target.n_calls == 8 and target.n_queries == 50  # ceil(50 / 7) requests, each record once
        assert (remote.n_sent, remote.n_cached_hits, remote.n_queries) == (50, 0, 50)
    with HttpTarget(server.url, batch_size=7, concurrency=4) as remote:
        np.testing.assert_array_equal(remote.predict_proba(X), P)  # the same answers, in order
        assert target.n_calls == 16
    with HttpTarget(server.url, batch_size=3, concurrency=4) as remote:
        np.testing.assert_array_equal(remote.predict_proba(X[::-1]), _local(target, X[::-1], 3))
        assert target.n_calls == 16 + 17


def test_an_empty_query_sends_nothing(served) -> None:
    target, server = served
    with HttpTarget(server.url) as remote:
        assert remote.predict_proba(np.zeros((0, 64))).shape == (0, 10)
        assert remote.n_sent == 0 and target.n_calls == 0


def test_duplicates_are_sent_once_and_float64_records_go_as_float32(served, digits) -> None:
    target, server = served
    X = digits[0][:5].astype(np.float64)
    with HttpTarget(server.url) as remote:
        P = remote.predict_proba(np.concatenate([X, X, X[:2]]))
        assert target.n_queries == 5 and remote.n_sent == 5
        np.testing.assert_array_equal(P[:5], P[5:10])
        np.testing.assert_array_equal(P[:5], _local(target, X.astype(np.float32), 256))
        with pytest.raises(DataError, match=r"shape \(n_samples, 64\)"):
            remote.predict_proba(X[:, :10])


def test_cache_serves_a_second_target_and_partial_calls(served, digits, tmp_path: Path) -> None:
    target, server = served
    X = digits[0][:40]
    with HttpTarget(server.url, cache_dir=tmp_path, batch_size=16) as first:
        P30 = first.predict_proba(X[:30])
    with HttpTarget(server.url, cache_dir=tmp_path) as second:
        np.testing.assert_array_equal(second.predict_proba(X[:30]), P30)
        assert (second.n_sent, second.n_cached_hits, target.n_queries) == (0, 30, 30)
        P40 = second.predict_proba(X)
        assert (second.n_sent, second.n_cached_hits, target.n_queries) == (10, 60, 40)
        np.testing.assert_array_equal(P40[:30], P30)
    assert len(AnswerCache(tmp_path, n_classes=10)) == 40
    # another URL (the same service under another name) does not share the answers
    with HttpTarget(server.url.replace("127.0.0.1", "localhost"), cache_dir=tmp_path) as other:
        other.predict_proba(X[:5])
        assert other.n_sent == 5


def test_budget_stops_before_exceeding_and_a_rerun_reuses_the_cache(served, digits, tmp_path: Path) -> None:
    target, server = served
    X = digits[0][:40]
    with HttpTarget(server.url, budget=30, cache_dir=tmp_path, batch_size=8) as remote:
        remote.predict_proba(X[:20])
        with pytest.raises(
            BudgetExhaustedError,
            match=r"budget of 30 records .* is spent \(30 sent\): this call answered 10 of its 20 records "
            r"\(0 from the cache\) and 10 remain; the answers are cached in .*answers\.sqlite: rerunning with a "
            r"larger --budget reuses them",
        ):
            remote.predict_proba(X[20:40])
        assert remote.n_sent == 30 and target.n_queries == 30  # nothing beyond the budget was sent
        np.testing.assert_array_equal(
            remote.predict_proba(X[:30]), np.concatenate([_local(target, X[:20], 8), _local(target, X[20:30], 8)])
        )
    assert len(AnswerCache(tmp_path, n_classes=10)) == 30
    with HttpTarget(server.url, budget=100, cache_dir=tmp_path) as rerun:
        rerun.predict_proba(X)
        assert (rerun.n_sent, rerun.n_cached_hits, target.n_queries) == (10, 30, 40)
    with HttpTarget(server.url, budget=0) as none, pytest.raises(BudgetExhaustedError, match="memory only"):
        none.predict_proba(X[:1])


def test_label_only_service_answers_one_hot_rows(live_server, digits) -> None:
    target = LocalTarget(_params())
    server = live_server(create_app(target, n_features=64, n_classes=10, classes=list("abcdefghij"), output="labels"))
    with HttpTarget(server.url) as remote:
        assert remote.output == "labels" and remote.classes == list("abcdefghij")
        P = remote.predict_proba(digits[0][:12])
    np.testing.assert_array_equal(P, np.eye(10)[target.predict_proba(digits[0][:12]).argmax(axis=1)])


def test_server_stopped_then_restarted_resumes_from_the_cache(served, digits, tmp_path: Path, delays) -> None:
    target, server = served
    X = digits[0][:50]
    remote = HttpTarget(server.url, cache_dir=tmp_path, max_retries=2, batch_size=10, concurrency=1)
    remote.predict_proba(X[:20])
    server.stop()
    with pytest.raises(
        TargetError,
        match=r"service at http://127\.0\.0\.1:\d+ stopped answering \(ConnectError: .*; 3 attempts\); answers so far "
        r"are cached in .*answers\.sqlite: rerun to resume",
    ):
        remote.predict_proba(X)
    assert delays == [0.5, 1.0]
    restarted = type(server)(app=server.app, port=server.port).start()
    try:
        np.testing.assert_array_equal(remote.predict_proba(X), _local(target, X, 10))
        assert remote.n_sent == 50 and target.n_queries == 50
    finally:
        remote.close()
        restarted.stop()


def test_server_dying_mid_run_keeps_the_answered_batches(live_server, digits, tmp_path: Path) -> None:
    model = _params()

    class DiesOnThirdCall(LocalTarget):
        def _predict_proba(self, X: np.ndarray) -> np.ndarray:
            if self.n_calls == 2:
                server.server.should_exit = True
                raise RuntimeError("the model process died")
            return super()._predict_proba(X)

    served = DiesOnThirdCall(model)
    server = live_server(create_app(served, n_features=64, n_classes=10))
    X = digits[0][:50]
    remote = HttpTarget(server.url, cache_dir=tmp_path, batch_size=10, concurrency=1, max_retries=4, backoff=0.05)
    with pytest.raises(TargetError, match=r"answers so far are cached in .*answers\.sqlite: rerun to resume"):
        remote.predict_proba(X)
    remote.close()
    server.stop()
    assert len(AnswerCache(tmp_path, n_classes=10)) == 20  # the two answered batches
    restarted = live_server(create_app(LocalTarget(model), n_features=64, n_classes=10), port=server.port)
    with HttpTarget(restarted.url, cache_dir=tmp_path, batch_size=10) as rerun:
        np.testing.assert_array_equal(rerun.predict_proba(X), _local(LocalTarget(model), X, 10))
        assert (rerun.n_sent, rerun.n_cached_hits) == (30, 20)


# -- auth ---------------------------------------------------------------------------------------------------------
@pytest.fixture
def guarded(live_server):
    return live_server(create_app(LocalTarget(_params()), n_features=64, n_classes=10, tokens=[TOKEN]))


def test_tokens_from_argument_file_and_environment(guarded, digits, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MIAUDIT_TOKEN", raising=False)
    X = digits[0][:3]
    with HttpTarget(guarded.url, token=TOKEN) as remote:
        assert remote.predict_proba(X).shape == (3, 10)
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")
    with HttpTarget(guarded.url, token_file=token_file) as remote:
        assert remote.predict_proba(X).shape == (3, 10)
    monkeypatch.setenv("MY_TOKEN", TOKEN)
    with HttpTarget(guarded.url, token_env="MY_TOKEN") as remote:
        assert remote.predict_proba(X).shape == (3, 10)


def test_refused_tokens_name_the_source_and_never_the_token(guarded, tmp_path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("MIAUDIT_TOKEN", raising=False)
    with pytest.raises(
        TargetError,
        match=r"refused no token .*; pass the service's token with token_file= \(--token-file\) or \$MIAUDIT_TOKEN",
    ):
        HttpTarget(guarded.url)
    wrong = TOKEN + "x"
    with pytest.raises(
        TargetError, match=r"refused the token passed as token= \(HTTP 401: unauthorized: .*\); check"
    ) as e1:
        HttpTarget(guarded.url, token=wrong)
    (tmp_path / "tok").write_text(wrong)
    with pytest.raises(TargetError, match=r"refused the token in the file .*tok \(HTTP 401") as e2:
        HttpTarget(guarded.url, token_file=tmp_path / "tok")
    monkeypatch.setenv("MIAUDIT_TOKEN", wrong)
    with pytest.raises(TargetError, match=r"refused the token in \$MIAUDIT_TOKEN") as e3:
        HttpTarget(guarded.url)
    monkeypatch.setenv("MIAUDIT_TOKEN", TOKEN)
    remote = HttpTarget(guarded.url, max_retries=1, backoff=0.001)
    guarded.stop()
    with pytest.raises(TargetError, match="stopped answering") as e4:
        remote.predict_proba(np.zeros((2, 64)))
    shown = [str(e.value) for e in (e1, e2, e3, e4)] + [repr(remote), caplog.text]
    assert "<hidden, the token in $MIAUDIT_TOKEN>" in repr(remote)
    assert "retry 1 of 1" in caplog.text
    assert not any(TOKEN in text for text in shown)


def test_a_server_echoing_the_token_is_redacted(delays) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"code": "bad_request", "message": request.headers["authorization"]}})

    remote = HttpTarget("http://svc", token=TOKEN, transport=_mock(echo))
    with pytest.raises(TargetError, match=r"answered HTTP 400: bad_request: Bearer <token>$") as e:
        remote.predict_proba(_X(1))
    assert TOKEN not in str(e.value)


def test_token_configuration_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="either token or token_file, not both"):
        HttpTarget("http://svc", token="a", token_file=tmp_path / "t", transport=_mock(_uniform))
    with pytest.raises(ConfigError, match=r"cannot read the token file .*missing \(FileNotFoundError\)"):
        HttpTarget("http://svc", token_file=tmp_path / "missing", transport=_mock(_uniform))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"the token in the file .*empty is empty"):
        HttpTarget("http://svc", token_file=tmp_path / "empty", transport=_mock(_uniform))
    with pytest.raises(ConfigError, match="the token passed as token= contains spaces or characters"):
        HttpTarget("http://svc", token="two words", transport=_mock(_uniform))


# -- retries ------------------------------------------------------------------------------------------------------
def test_429_is_retried_after_retry_after(delays) -> None:
    seen: list[int] = []

    def limited(request: httpx.Request) -> httpx.Response:
        seen.append(_n_records(request))
        if len(seen) <= 2:
            return httpx.Response(
                429, headers={"Retry-After": "0"}, json={"error": {"code": "rate_limited", "message": "slow down"}}
            )
        return _uniform(request)

    remote = HttpTarget("http://svc", transport=_mock(limited), backoff=0.001)
    np.testing.assert_array_equal(remote.predict_proba(_X(3)), [[0.25, 0.75]] * 3)
    assert seen == [3, 3, 3] and delays == [0.0, 0.0] and remote.n_sent == 3


def test_5xx_forever_is_an_error_after_max_retries(delays) -> None:
    seen: list[int] = []

    def broken(request: httpx.Request) -> httpx.Response:
        seen.append(1)
        return httpx.Response(500, json={"error": {"code": "internal", "message": "boom"}})

    remote = HttpTarget("http://svc", transport=_mock(broken), max_retries=3, backoff=0.001)
    with pytest.raises(
        TargetError, match=r"failed \(HTTP 500: internal: boom; 4 attempts\); answers so far are cached in memory"
    ):
        remote.predict_proba(_X(3))
    assert len(seen) == 4 and delays == [0.001, 0.002, 0.004] and remote.n_sent == 0

    def limited(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"error": {"code": "rate_limited", "message": "slow down"}})

    remote = HttpTarget("http://svc", transport=_mock(limited), max_retries=0)
    resume = (
        r"\(HTTP 429: rate_limited: slow down; 1 attempt\); .* rerun to resume later, or with a lower --concurrency"
    )
    with pytest.raises(TargetError, match=resume):
        remote.predict_proba(_X(1))


def test_connection_errors_are_retried_and_retry_after_is_capped(delays) -> None:
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("connection reset")
        if len(calls) == 2:
            return httpx.Response(503, headers={"Retry-After": "9999"}, text="busy")
        return _uniform(request)

    remote = HttpTarget("http://svc", transport=_mock(flaky), backoff=0.25)
    remote.predict_proba(_X(1))
    assert delays == [0.25, 30.0] and len(calls) == 3


def test_retry_delay() -> None:
    assert [retry_delay(a, backoff=0.001) for a in range(3)] == [0.001, 0.002, 0.004]
    assert retry_delay(2, backoff=0.5, retry_after="1.5") == 1.5
    assert retry_delay(2, backoff=0.5, retry_after="Wed, 21 Oct 2015 07:28:00 GMT") == 2.0
    assert retry_delay(0, backoff=1, retry_after="-3") == 1.0
    assert retry_delay(20, backoff=1) == 30.0 and retry_delay(20, backoff=1, cap=5) == 5


def test_413_halves_the_batch_down_to_one(delays) -> None:
    sizes: list[int] = []

    def small(request: httpx.Request) -> httpx.Response:
        sizes.append(_n_records(request))
        if sizes[-1] > 3:
            return httpx.Response(413, json={"error": {"code": "payload_too_large", "message": "at most 3"}})
        return _uniform(request)

    remote = HttpTarget("http://svc", transport=_mock(small), batch_size=10, concurrency=1)
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    assert remote.predict_proba(X).shape == (10, 2)
    assert sizes == [10, 5, 3, 2, 3, 2] and remote.n_sent == 10
    sizes.clear()
    remote.predict_proba(X + 100)
    assert sizes == [3, 3, 3, 1]  # the halved size sticks

    def never(request: httpx.Request) -> httpx.Response:
        sizes.append(_n_records(request))
        return httpx.Response(413, text="too large")

    sizes.clear()
    with pytest.raises(TargetError, match=r"refuses even one record as too large \(HTTP 413: too large\)"):
        HttpTarget("http://svc", transport=_mock(never), batch_size=4, concurrency=1).predict_proba(X[:4])
    assert sizes == [4, 2, 1]


# -- bad answers --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "match"),
    [
        (422, {"error": {"code": "invalid_request", "message": "records[0] has 2 numbers"}},
         r"rejected the records \(HTTP 422: invalid_request: records\[0\] has 2 numbers\); check that they are "
         r"the 2 features"),
        (400, "plain words", r"answered HTTP 400: plain words$"),
        (404, {"error": {"code": "not_found", "message": "Not Found"}}, r"HTTP 404: not_found: Not Found; check that "
         r"the URL is the service's root \(without /v1/...\)"),
        (200, "<html>", r"answered HTTP 200 with something that is not JSON \('<html>'\)"),
        (200, [1, 2], r"without 'probabilities' or 'labels'"),
        (200, {"probabilities": [[0.5, 0.5]]}, r"probabilities of shape \(1, 2\) for 3 records; expected \(3, 2\)"),
        (200, {"probabilities": [[1.0]] * 3}, r"probabilities of shape \(3, 1\) for 3 records; expected \(3, 2\)"),
        (200, {"probabilities": [[0.5, "x"]] * 3}, r"probabilities that are not a table of numbers"),
        (200, {"probabilities": [[0.5, 0.5], [1.0], [0.5, 0.5]]}, r"probabilities that are not a table of numbers"),
        (200, {"probabilities": [[0.9, 0.9]] * 3}, r"rows summing to 1\.8"),
        (200, {"labels": [0, 2, 1]}, r"labels outside 0\.\.1 or not integers"),
        (200, {"labels": [0, 1]}, r"labels that are not a list of 3 class indices"),
    ],
)  # fmt: skip
def test_unusable_answers_are_target_errors_and_not_cached(status: int, body: object, match: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    remote = HttpTarget("http://svc", transport=_mock(answer))
    with pytest.raises(TargetError, match=match):
        remote.predict_proba(_X(3))
    assert len(remote._cache) == 0 and remote.n_sent == 0


def test_nan_in_an_answer_is_refused() -> None:
    def nan(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text='{"probabilities": [[NaN, 0.5]]}')

    with pytest.raises(TargetError, match="NaN or infinite probabilities"):
        HttpTarget("http://svc", transport=_mock(nan)).predict_proba(_X(1))


def test_top_k_answers_pass_through_as_they_are() -> None:
    def top2(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"probabilities": [[0.5, 0.25, 0.0, 0.0], [0.6, 0.0, 0.0, 0.2]]})

    remote = HttpTarget("http://svc", transport=_mock(top2, info={**_INFO, "n_classes": 4, "output": "top_k"}))
    assert remote.output == "top_k"
    np.testing.assert_array_equal(remote.predict_proba(_X(2)), [[0.5, 0.25, 0.0, 0.0], [0.6, 0.0, 0.0, 0.2]])


@pytest.mark.parametrize(
    ("info", "match"),
    [
        ({**_INFO, "protocol": 2}, r"speaks protocol 2; this miaudit speaks protocol 1"),
        ({**_INFO, "n_classes": 1}, r"n_classes must be an integer >= 2; got 1"),
        ({**_INFO, "n_features": "2"}, r"n_features must be an integer >= 1; got '2'"),
        ({**_INFO, "classes": ["a"]}, r"classes must be null or a list of 2 labels"),
        ({**_INFO, "input_shape": [3]}, r"input_shape \[3\] holds 3 values, not 2"),
        ({**_INFO, "input_shape": [2, 0]}, r"input_shape must be null or a list of positive integers"),
        ({**_INFO, "output": "logits"}, r"output must be one of probabilities, top_k, rounded, labels; got 'logits'"),
    ],
)
def test_bad_model_descriptions(info: dict, match: str) -> None:
    with pytest.raises(TargetError, match=match):
        HttpTarget("http://svc", transport=_mock(_uniform, info=info))


def test_construction_errors(delays) -> None:
    """An unreachable service and bad arguments; no request is retried without a wait."""

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    with pytest.raises(
        TargetError,
        match=r"could not get an answer .* while reading the model's description \(ConnectError: refused; "
        r"2 attempts\); check the URL",
    ):
        HttpTarget("http://svc", transport=httpx.MockTransport(refused), max_retries=1)
    for kwargs, match in [
        ({"batch_size": 0}, "batch_size must be an integer >= 1; got 0"),
        ({"concurrency": 0}, "concurrency must be an integer >= 1; got 0"),
        ({"max_retries": -1}, "max_retries must be an integer >= 0; got -1"),
        ({"budget": -5}, "budget must be None or an integer >= 0; got -5"),
        ({"timeout": 0}, "timeout must be > 0"),
    ]:
        with pytest.raises(ConfigError, match=match):
            HttpTarget("http://svc", transport=_mock(_uniform), **kwargs)
    for url in ("ftp://svc", "svc:80", "http://"):
        with pytest.raises(ConfigError, match="is not an http"):
            HttpTarget(url, transport=_mock(_uniform))
