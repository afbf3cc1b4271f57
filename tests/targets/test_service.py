"""The reference prediction service: protocol 1 answers, validation, auth and error shapes, on 127.0.0.1."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from miaudit.errors import ConfigError
from miaudit.targets import LocalTarget
from miaudit.targets.policies import OutputPolicy
from miaudit.targets.service import create_app
from miaudit.targets.service_limits import (
    Authenticator,
    Budget,
    QueryLog,
    RateLimiter,
    is_loopback,
    parse_rate,
    parse_tokens,
    read_token_file,
    records_digest,
    token_id,
    tokens_from_env,
)
from miaudit.training.networks import build_module, params_from_module
from miaudit.training.specs import ModelSpec


def _target() -> LocalTarget:
    spec = ModelSpec(n_features=4, n_classes=3, hidden=(5,))
    return LocalTarget(params_from_module(build_module(spec), spec))


@pytest.fixture(scope="module")
def service(module_live_server):
    """One service (token "s3cret", at most 8 records per request) shared by this module's tests."""
    target = _target()
    app = create_app(target, n_features=4, n_classes=3, classes=["a", "b", "c"], input_shape=[2, 2],
                     tokens=["other", "s3cret"], max_batch=8)  # fmt: skip
    server = module_live_server(app)
    with httpx.Client(base_url=server.url, headers={"Authorization": "Bearer s3cret"}) as client:
        yield target, client, server.url


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return f"{body['error']['code']}: {body['error']['message']}"


def test_model_health_and_predict(service) -> None:
    target, client, _ = service
    assert client.get("/v1/health").json() == {"status": "ok"}
    assert client.get("/v1/model").json() == {
        "n_features": 4, "n_classes": 3, "classes": ["a", "b", "c"], "input_shape": [2, 2],
        "output": "probabilities", "policy": "full", "protocol": 1,
        "limits": {"max_batch": 8, "max_body_bytes": 8 * 4 * 32 + 1024, "rate_limit": None, "burst": None,
                   "budget": None},
    }  # fmt: skip
    X = np.random.default_rng(0).normal(size=(5, 4))
    r = client.post("/v1/predict", json={"records": X.tolist()})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    P = np.array(r.json()["probabilities"])
    np.testing.assert_array_equal(P, target.predict_proba(X))  # float64 exact through JSON
    # integers are numbers too
    r = client.post("/v1/predict", json={"records": [[0, 1, 2, 3]]})
    assert r.status_code == 200 and len(r.json()["probabilities"]) == 1


def test_auth(service) -> None:
    _, _, url = service
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic s3cret"},
        {"Authorization": "s3cret"},
    ):
        r = httpx.get(f"{url}/v1/model", headers=headers)
        assert "unauthorized: a valid bearer token" in _error(r, 401)
        assert r.headers["www-authenticate"] == "Bearer"
        r = httpx.post(f"{url}/v1/predict", headers=headers, json={"records": [[1, 2, 3, 4]]})
        _error(r, 401)
    # health needs no token; the other accepted token works
    assert httpx.get(f"{url}/v1/health").status_code == 200
    assert httpx.get(f"{url}/v1/model", headers={"Authorization": "Bearer other"}).status_code == 200


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('{"records": [[1, 2, 3]]}', r"records\[0\] has 3 numbers; this model takes 4 features"),
        ('{"records": [[1, 2, 3, 4], [1, 2, 3, 4, 5]]}', r"records\[1\] has 5 numbers"),
        ('{"records": [[1, NaN, 3, 4]]}', r"records\[0\]\[1\]: Input should be a finite number"),
        ('{"records": [[1, 2, Infinity, 4]]}', r"records\[0\]\[2\]: Input should be a finite number"),
        ('{"records": [[1, 2, 3, 1e999]]}', r"records\[0\]\[3\]: Input should be a finite number"),
        ('{"records": [[1, "2", 3, 4]]}', r"records\[0\]\[1\]: Input should be a valid number"),
        ('{"records": [[1, true, 3, 4]]}', r"records\[0\]\[1\]: Input should be a valid number"),
        ('{"records": [[1, null, 3, 4]]}', r"records\[0\]\[1\]: Input should be a valid number"),
        ('{"records": []}', r"records: List should have at least 1 item"),
        ('{"records": [1, 2, 3, 4]}', r"records\[0\]: Input should be a valid (list|array)"),
        ('{"records": "1,2,3,4"}', r"records: Input should be a valid (list|array)"),
        ('{"rows": [[1, 2, 3, 4]]}', r"records: Field required"),
        ('{"records": [[1, 2, 3, 4]], "extra": 1}', r"extra: Extra inputs are not permitted"),
        ("[[1, 2, 3, 4]]", r"Input should be an object; send a JSON object"),
        ("not json", r"the body is not valid JSON \(Invalid JSON: expected ident at line 1 column 2\); send a JSON"),
        ('{"records": [[1, 2, 3, 4]]', r"the body is not valid JSON \(Invalid JSON: EOF while parsing"),
        ("  ", r"the body is empty; send a JSON object"),
        ("", r"the body is empty; send a JSON object"),
    ],
)
def test_validation_is_422_in_the_error_shape(service, body: str, match: str) -> None:
    _, client, _ = service
    r = client.post("/v1/predict", content=body.encode(), headers={"Content-Type": "application/json"})
    message = _error(r, 422)
    assert message.startswith("invalid_request: ")
    assert re.search(match, message), message


def test_openapi_documents_the_request_body(service) -> None:
    _, client, _ = service
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["records"] and body["properties"]["records"]["minItems"] == 1


def test_oversize_batch_is_413_and_other_errors_keep_the_shape(service) -> None:
    _, client, _ = service
    r = client.post("/v1/predict", json={"records": [[0.5] * 4] * 9})
    assert "payload_too_large: 9 records in one request; this service takes at most 8" in _error(r, 413)
    assert client.post("/v1/predict", json={"records": [[0.5] * 4] * 8}).status_code == 200
    huge = b'{"records": [[' + b"1," * 5000 + b"1]]}"
    assert "payload_too_large: the body has" in _error(client.post("/v1/predict", content=huge), 413)
    assert "not_found" in _error(client.get("/v1/nothing"), 404)
    assert "method_not_allowed" in _error(client.get("/v1/predict"), 405)


def test_labels_output_and_model_errors_are_500(live_server) -> None:
    target = _target()
    X = np.random.default_rng(1).normal(size=(6, 4))
    server = live_server(create_app(target, n_features=4, n_classes=3, output="labels"))
    r = httpx.post(f"{server.url}/v1/predict", json={"records": X.tolist()})
    assert r.json() == {"labels": target.predict_proba(X).argmax(axis=1).tolist()}

    class Broken:
        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            return np.full((len(X), 3), np.nan)

    server = live_server(create_app(Broken(), n_features=4, n_classes=3))
    r = httpx.post(f"{server.url}/v1/predict", json={"records": X.tolist()})
    assert "internal: the model failed to answer" in _error(r, 500)
    assert json.loads(httpx.get(f"{server.url}/v1/model").text)["classes"] is None


def test_create_app_checks_its_arguments() -> None:
    t = _target()
    with pytest.raises(ConfigError, match="needs a predict_proba"):
        create_app(object(), n_features=4, n_classes=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="n_features must be an integer >= 1; got 0"):
        create_app(t, n_features=0, n_classes=3)
    with pytest.raises(ConfigError, match="max_batch must be an integer >= 1"):
        create_app(t, n_features=4, n_classes=3, max_batch=0)
    with pytest.raises(ConfigError, match="output must be one of probabilities, labels; got 'top_k' .other answers"):
        create_app(t, n_features=4, n_classes=3, output="top_k")
    with pytest.raises(ConfigError, match="classes must list 3 labels; got 2"):
        create_app(t, n_features=4, n_classes=3, classes=["a", "b"])
    with pytest.raises(ConfigError, match=r"input_shape \(3, 3\) holds 9 values, not 4"):
        create_app(t, n_features=4, n_classes=3, input_shape=(3, 3))
    with pytest.raises(ConfigError, match="tokens must be None or a non-empty list"):
        create_app(t, n_features=4, n_classes=3, tokens=[])


# ------------------------------------------------------------------------------------------------ limits
class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _post(url: str, token: str, n: int, *, value: float = 0.5) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/predict", headers={"Authorization": f"Bearer {token}"}, json={"records": [[value] * 4] * n}
    )


def test_named_tokens_and_token_ids(live_server, tmp_path) -> None:
    log = tmp_path / "q.jsonl"
    app = create_app(_target(), n_features=4, n_classes=3, tokens={"alice": "alice-token-123456", "bob": "b0b"},
                     query_log=log)  # fmt: skip
    url = live_server(app).url
    assert _post(url, "alice-token-123456", 1).status_code == 200
    assert _post(url, "b0b", 2).status_code == 200
    assert _post(url, "alice-token-12345", 1).status_code == 401  # a prefix of a token is not the token
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["token"], e["status"], e["n_records"]) for e in lines] == [("alice", 200, 1), ("bob", 200, 2),
                                                                          (None, 401, None)]  # fmt: skip
    assert "alice-token" not in log.read_text() and "b0b" not in log.read_text()


def test_rate_limit_is_per_token_with_retry_after(live_server) -> None:
    clock = FakeClock()
    app = create_app(_target(), n_features=4, n_classes=3, tokens={"a": "token-a", "b": "token-b"},
                     rate_limit="2/s", burst=4, clock=clock)  # fmt: skip
    url = live_server(app).url
    assert _post(url, "token-a", 4).status_code == 200  # the whole burst at once
    r = _post(url, "token-a", 1)
    assert "rate_limited: this token may send 2 records per second (up to 4 at once); retry in 1 s" in _error(r, 429)
    assert r.headers["retry-after"] == "1"
    assert _post(url, "token-b", 4).status_code == 200  # the other token has its own bucket
    clock.t += 0.5  # one record's worth
    assert _post(url, "token-a", 1).status_code == 200
    r = _post(url, "token-a", 3)
    assert _error(r, 429) and r.headers["retry-after"] == "2"  # 3 records at 2 per second: 1.5 s, rounded up
    clock.t += 1.5
    assert _post(url, "token-a", 3).status_code == 200
    # more than the bucket holds can never pass: 413, so that clients split the batch
    r = _post(url, "token-a", 5)
    assert "5 records in one request; the rate limit lets a token send at most 4 at once" in _error(r, 413)
    info = httpx.get(f"{url}/v1/model", headers={"Authorization": "Bearer token-b"}).json()
    assert info["limits"]["rate_limit"] == 2.0 and info["limits"]["burst"] == 4


def test_budget_is_shared_by_one_tokens_requests_and_survives_a_restart(live_server, tmp_path) -> None:
    log = tmp_path / "log" / "queries.jsonl"
    tokens = {"a": "token-a", "b": "token-b"}
    url = live_server(create_app(_target(), n_features=4, n_classes=3, tokens=tokens, budget=10, query_log=log)).url
    assert _post(url, "token-a", 6).status_code == 200
    r = _post(url, "token-a", 5)
    message = _error(r, 429)
    assert message == ("budget_exhausted: this token's budget of 10 records is spent (4 left, this request has 5); "
                       "ask the service's operator for more")  # fmt: skip
    assert "retry-after" not in r.headers  # a total budget does not refill: waiting cannot help
    assert _post(url, "token-a", 4).status_code == 200  # the refused request took nothing
    assert _error(_post(url, "token-a", 1), 429).startswith("budget_exhausted")
    assert _post(url, "token-b", 10).status_code == 200  # another token is unaffected
    # malformed requests cost nothing
    assert httpx.post(f"{url}/v1/predict", headers={"Authorization": "Bearer token-b"},
                      json={"records": [[1, 2]]}).status_code == 422  # fmt: skip
    # a restarted service reads what each token spent from its query log
    url = live_server(create_app(_target(), n_features=4, n_classes=3, tokens=tokens, budget=11, query_log=log)).url
    assert _post(url, "token-a", 1).status_code == 200
    assert "budget of 11 records is spent (0 left" in _error(_post(url, "token-a", 1), 429)
    assert "(1 left, this request has 2)" in _error(_post(url, "token-b", 2), 429)


def test_a_rate_limited_request_takes_nothing_from_the_budget(live_server) -> None:
    clock = FakeClock()
    url = live_server(create_app(_target(), n_features=4, n_classes=3, tokens=["t-123"], rate_limit=1, burst=2,
                                 budget=4, clock=clock)).url  # fmt: skip
    assert _post(url, "t-123", 2).status_code == 200
    assert _error(_post(url, "t-123", 2), 429).startswith("rate_limited")
    clock.t += 2
    assert _post(url, "t-123", 2).status_code == 200  # the budget of 4 still had 2
    clock.t += 2
    assert _error(_post(url, "t-123", 1), 429).startswith("budget_exhausted")


def test_http_target_waits_out_rate_limits_and_stops_at_a_spent_budget(live_server, monkeypatch) -> None:
    from miaudit.errors import BudgetExhaustedError
    from miaudit.targets import http as http_module
    from miaudit.targets.http import HttpTarget

    clock, waits = FakeClock(), []

    def sleep(seconds: float) -> None:  # the client's waits move the service's clock instead of taking time
        waits.append(seconds)
        clock.t += seconds

    monkeypatch.setattr(http_module, "_sleep", sleep)
    target = _target()
    app = create_app(target, n_features=4, n_classes=3, tokens=["tok-1"], rate_limit=3, burst=3, budget=12,
                     clock=clock)  # fmt: skip
    url = live_server(app).url
    X = np.random.default_rng(2).normal(size=(9, 4)).astype(np.float32)
    with HttpTarget(url, token="tok-1", batch_size=3, concurrency=1) as remote:
        np.testing.assert_array_equal(remote.predict_proba(X), target.predict_proba(X))
        assert waits == [1.0, 1.0]  # batches 2 and 3 waited 1 s each (3 records at 3 per second)
        Y = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
        with pytest.raises(
            BudgetExhaustedError,
            match=r"answers no more records for the token passed as token= "
            r"\(HTTP 429: budget_exhausted: this token's budget of 12 records is spent \(0 left",
        ):
            remote.predict_proba(Y)  # fmt: skip
        assert remote.n_sent == 12 and len(waits) == 3  # the spent budget was not retried


def test_body_limits_count_the_bytes_actually_sent(service) -> None:
    _, client, _ = service

    def chunks(body: bytes):
        for i in range(0, len(body), 100):
            yield body[i : i + 100]

    small = b'{"records": [[1, 2, 3, 4]]}'
    r = client.post("/v1/predict", content=chunks(small))
    assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
    assert r.status_code == 200
    padded = b'{"records": [[1, 2, 3, 4]]' + b" " * 3000 + b"}"  # valid JSON, but over the 2048 bytes
    r = client.post("/v1/predict", content=chunks(padded))
    assert "payload_too_large: the body has more than 2048 bytes" in _error(r, 413)


def test_values_beyond_float32_are_422(service) -> None:
    _, client, _ = service
    r = client.post("/v1/predict", json={"records": [[1, 2, 3, 3.5e38]]})
    assert "records[0][3]: 3.5e+38 is outside float32's range (-3.4028235e+38 to 3.4028235e+38)" in _error(r, 422)
    r = client.post("/v1/predict", json={"records": [[-1e39, 2, 3, 4]]})
    assert "records[0][0]: -1e+39 is outside float32's range" in _error(r, 422)
    assert client.post("/v1/predict", json={"records": [[3e38, 2, 3, 4]]}).status_code == 200


@pytest.mark.parametrize("failure", ["raises", "nan"])
def test_records_the_model_cannot_answer_are_422_not_500(live_server, failure: str) -> None:
    class Fragile:  # answers records of moderate values only, like a model that overflows on huge inputs
        def __init__(self) -> None:
            self.inner = _target()

        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            if np.abs(X).max() > 1e6 and failure == "raises":
                raise ValueError("Input contains a value too large for dtype('float32')")
            P = self.inner.predict_proba(np.clip(X, -10, 10))
            P[np.abs(X).max(axis=1) > 1e6] = np.nan
            return P

    url = live_server(create_app(Fragile(), n_features=4, n_classes=3, budget=3)).url
    r = httpx.post(f"{url}/v1/predict", json={"records": [[1, 2, 3, 4], [3e38, -3e38, 1, 1]]})
    message = _error(r, 422)
    detail = "ValueError" if failure == "raises" else "its output is not finite"
    assert message.startswith(f"invalid_request: records: the model gives no answer for these records ({detail})")
    r = httpx.post(f"{url}/v1/predict", json={"records": [[1, 2, 3, 4]] * 3})
    assert r.status_code == 200  # the refused request did not spend the budget


def test_query_log_lines(live_server, tmp_path) -> None:
    log = tmp_path / "queries.jsonl"
    app = create_app(_target(), n_features=4, n_classes=3, tokens=["secret-token-1"], policy="top_k:2",
                     max_batch=4, query_log=log)  # fmt: skip
    url = live_server(app).url
    auth = {"Authorization": "Bearer secret-token-1"}
    records = [[0.1, 0.2, 0.3, 0.4], [1, 2, 3, 4]]
    for body in ({"records": records}, {"records": records}, {"records": records[::-1]}, {"records": [[1]]},
                 {"records": [[0] * 4] * 5}):  # fmt: skip
        httpx.post(f"{url}/v1/predict", headers=auth, json=body)
    httpx.get(f"{url}/v1/model", headers=auth)
    httpx.get(f"{url}/v1/health")  # not logged
    httpx.post(f"{url}/v1/predict", json={"records": records})  # no token
    text = log.read_text()
    assert "secret-token-1" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert all(set(e) == {"time", "token", "client", "path", "status", "n_records", "policy", "digest"} for e in lines)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["time"]) for e in lines)
    ident = "sha256:" + __import__("hashlib").sha256(b"secret-token-1").hexdigest()[:8]
    table = [(e["token"], e["path"], e["status"], e["n_records"], e["policy"]) for e in lines]
    assert table == [
        (ident, "/v1/predict", 200, 2, "top_k:2"),
        (ident, "/v1/predict", 200, 2, "top_k:2"),
        (ident, "/v1/predict", 200, 2, "top_k:2"),
        (ident, "/v1/predict", 422, 1, "top_k:2"),
        (ident, "/v1/predict", 413, 5, "top_k:2"),
        (ident, "/v1/model", 200, None, None),
        (None, "/v1/predict", 401, None, "top_k:2"),
    ]
    digests = [e["digest"] for e in lines]
    assert digests[0] == digests[1] != digests[2]  # a repeated batch has the same digest, reordered another
    assert all(re.fullmatch(r"[0-9a-f]{16}", d) for d in digests[:3]) and digests[3:] == [None] * 4
    assert {e["client"] for e in lines} == {"127.0.0.1"}


# ------------------------------------------------------------------------------------------------ policies
@pytest.mark.parametrize(
    ("policy", "output"),
    [
        (OutputPolicy("full"), "probabilities"),
        (OutputPolicy("top_k", k=2), "top_k"),
        (OutputPolicy("rounding", decimals=2), "rounded"),
        (OutputPolicy("temperature", temperature=3.0), "probabilities"),
        (OutputPolicy("label_only"), "labels"),
        (OutputPolicy("noise", noise_scale=0.05, seed=7), "probabilities"),
        (OutputPolicy("noise", noise_scale=0.05, distribution="gaussian", seed=7), "probabilities"),
    ],
)
def test_each_output_policy_end_to_end_through_http_target(live_server, policy: OutputPolicy, output: str) -> None:
    from miaudit.targets.http import HttpTarget

    target = _target()
    url = live_server(create_app(target, n_features=4, n_classes=3, tokens=["tok-e2e"], policy=policy)).url
    X = np.random.default_rng(5).normal(scale=2.0, size=(40, 4))
    X32 = X.astype(np.float32)
    expected = policy.apply(target.predict_proba(X32), rng_key=X32.astype(np.float64))
    with HttpTarget(url, token="tok-e2e", batch_size=16) as remote:
        assert remote.output == output
        got = remote.predict_proba(X)
    np.testing.assert_array_equal(got, expected)
    P = target.predict_proba(X32)
    if policy.kind in ("full", "temperature"):
        assert np.allclose(got.sum(axis=1), 1.0)
    if policy.kind != "full":  # every policy changes what leaves the service
        assert not np.array_equal(got, P)
    if policy.kind in ("temperature", "label_only", "top_k"):  # the predicted class is kept
        np.testing.assert_array_equal(got.argmax(axis=1), P.argmax(axis=1))


def test_label_only_answers_in_the_labels_shape_and_noise_is_a_function_of_the_record(service, live_server) -> None:
    target = _target()
    url = live_server(create_app(target, n_features=4, n_classes=3, policy="label_only")).url
    X = np.random.default_rng(6).normal(size=(7, 4))
    assert httpx.post(f"{url}/v1/predict", json={"records": X.tolist()}).json() == {
        "labels": target.predict_proba(X).argmax(axis=1).tolist()
    }
    answers = []
    for seed in (1, 1, 2):
        policy = OutputPolicy("noise", noise_scale=0.1, seed=seed)
        url = live_server(create_app(target, n_features=4, n_classes=3, policy=policy)).url
        first = httpx.post(f"{url}/v1/predict", json={"records": X.tolist()}).json()["probabilities"]
        again = httpx.post(f"{url}/v1/predict", json={"records": X[::-1].tolist()}).json()["probabilities"]
        assert first == again[::-1]  # asking again (in another order) cannot average the noise out
        answers.append(first)
    assert answers[0] == answers[1] != answers[2]  # same seed, same noise; another seed, other noise


def test_create_app_checks_its_limits_and_policy() -> None:
    t = _target()
    with pytest.raises(ConfigError, match="max_body_bytes must be an integer >= 64; got 10"):
        create_app(t, n_features=4, n_classes=3, max_body_bytes=10)
    with pytest.raises(ConfigError, match="burst applies to a rate limit; give rate_limit too"):
        create_app(t, n_features=4, n_classes=3, burst=5)
    with pytest.raises(ConfigError, match="a rate limit is a positive number of records per second"):
        create_app(t, n_features=4, n_classes=3, rate_limit="fast")
    with pytest.raises(ConfigError, match="burst must be an integer >= 1"):
        create_app(t, n_features=4, n_classes=3, rate_limit=5, burst=0)
    with pytest.raises(ConfigError, match="the budget must be an integer >= 1"):
        create_app(t, n_features=4, n_classes=3, budget=0)
    with pytest.raises(ConfigError, match="output='labels' contradicts the policy 'top_k:2'"):
        create_app(t, n_features=4, n_classes=3, output="labels", policy="top_k:2")
    with pytest.raises(ConfigError, match="top_k's k=4 exceeds the model's 3 classes"):
        create_app(t, n_features=4, n_classes=3, policy="top_k:4")
    with pytest.raises(ConfigError, match="policy must be an OutputPolicy or a string"):
        create_app(t, n_features=4, n_classes=3, policy=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tokens must be a list of tokens"):
        create_app(t, n_features=4, n_classes=3, tokens="s3cret")
    with pytest.raises(ConfigError, match="cannot open the query log"):
        create_app(t, n_features=4, n_classes=3, query_log=Path("/proc/no/such/log.jsonl"))


def test_openapi_schema_is_kept_in_the_docs() -> None:
    app = create_app(_target(), n_features=4, n_classes=3)
    stored = json.loads((Path(__file__).parents[2] / "docs" / "openapi.json").read_text())
    assert stored == app.openapi(), "docs/openapi.json is stale: regenerate it (docs/http-protocol.md says how)"
    # the schema does not depend on the model or the limits served
    other = create_app(_target(), n_features=4, n_classes=3, tokens=["x"], policy="label_only", rate_limit=1)
    assert other.openapi() == app.openapi()
    post = stored["paths"]["/v1/predict"]["post"]
    assert set(post["responses"]) == {"200", "400", "401", "413", "422", "429", "500"}
    assert post["security"] == [{"bearer": []}]
    assert stored["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}


# ------------------------------------------------------------------------------------------------ bookkeeping
def test_parse_tokens() -> None:
    ids = parse_tokens(["# operators", "alice:a-long-token-1", "", "  b-long-token-2  "], source="the file f")
    assert ids == {"alice": "a-long-token-1", token_id("b-long-token-2"): "b-long-token-2"}
    assert token_id("b-long-token-2") == "sha256:" + __import__("hashlib").sha256(b"b-long-token-2").hexdigest()[:8]
    for entries, match in [
        ([], "the file f holds no token; write one per line"),
        (["# only a comment"], "holds no token"),
        (["bad name:tok-123"], "entry 1 of the file f: a token's name may hold only letters"),
        (["alice:"], "entry 1 of the file f: the token is empty"),
        (["x", "al:tok with space"], "entry 2 of the file f: the token is empty or holds spaces"),
        (["alice:tok-1", "alice:tok-2"], "entry 2 of the file f: a second token with the id 'alice'"),
        (["a:tok-1", "b:tok-1"], "entry 2 of the file f: the same token appears twice in the file f"),
        (["tok-\u00e9"], "characters an HTTP header cannot carry"),
    ]:
        with pytest.raises(ConfigError, match=match):
            parse_tokens(entries, source="the file f")


def test_token_file_and_environment(tmp_path, monkeypatch) -> None:
    f = tmp_path / "tokens.txt"
    f.write_text("ops:0123456789abcdef\n", encoding="utf-8")
    assert read_token_file(f) == {"ops": "0123456789abcdef"}
    with pytest.raises(
        ConfigError, match="cannot read the token file .*missing.txt .FileNotFoundError.; check --token"
    ):
        read_token_file(tmp_path / "missing.txt")
    monkeypatch.delenv("MIAUDIT_TOKEN", raising=False)
    assert tokens_from_env() is None
    monkeypatch.setenv("MIAUDIT_TOKEN", "a:tok-aaaa, tok-bbbb")
    assert tokens_from_env() == {"a": "tok-aaaa", token_id("tok-bbbb"): "tok-bbbb"}


def test_authenticator() -> None:
    auth = Authenticator({"a": "tok-a", "b": "tok-b"})
    assert auth.ids == ["a", "b"]
    assert auth.identify("Bearer tok-b") == "b" and auth.identify("bearer  tok-a ") == "a"
    for header in (None, "", "Bearer", "Bearer tok-c", "Basic tok-a", "tok-a", "Bearer tok-a tok-b", "Bearer \udcff"):
        assert auth.identify(header) is None, header
    assert Authenticator(None).identify(None) == "anonymous"


def test_rate_limiter_and_budget_bookkeeping() -> None:
    clock = FakeClock()
    limiter = RateLimiter(10.0, clock=clock)
    assert limiter.burst == 10
    assert limiter.take("k", 10) == 0.0
    assert limiter.take("k", 4) == pytest.approx(0.4)
    clock.t += 0.2
    assert limiter.take("k", 4) == pytest.approx(0.2)  # 2 of the 4 are there
    clock.t += 100
    assert limiter.take("k", 10) == 0.0  # the bucket holds at most burst
    assert limiter.take("k", 1) == pytest.approx(0.1)
    assert RateLimiter(0.5).burst == 1
    with pytest.raises(ConfigError, match="positive number of records per second; got -1"):
        RateLimiter(-1)
    budget = Budget(5, spent={"k": 2})
    assert budget.reserve("k", 4) == 3 and budget.spent("k") == 2
    assert budget.reserve("k", 3) is None and budget.spent("k") == 5
    budget.refund("k", 3)
    assert budget.spent("k") == 2 and budget.reserve("other", 5) is None


@pytest.mark.parametrize(
    ("text", "rate"), [("100/s", 100.0), ("100", 100.0), ("6000/min", 100.0), ("36/h", 0.01), (2.5, 2.5)]
)
def test_parse_rate(text: str | float, rate: float) -> None:
    assert parse_rate(text) == pytest.approx(rate)


@pytest.mark.parametrize("text", ["0/s", "-1", "10/day", "ten/s", "nan", "inf/s", True])
def test_parse_rate_refuses(text: object) -> None:
    with pytest.raises(ConfigError, match="a rate limit is a positive number of records per second, minute or hour"):
        parse_rate(text)  # type: ignore[arg-type]


def test_query_log_reading_and_loopback_hosts(tmp_path) -> None:
    log = QueryLog(tmp_path / "q.jsonl")
    log.write(token="a", path="/v1/predict", status=200, n_records=3)
    log.write(token="a", path="/v1/predict", status=429, n_records=9)
    log.write(token=None, path="/v1/predict", status=401)
    log.write(token="b", path="/v1/model", status=200)
    log.close()
    log.write(token="a", path="/v1/predict", status=200, n_records=50)  # after close: dropped
    with (tmp_path / "q.jsonl").open("a") as f:
        f.write('{"token": "a", "path": "/v1/predict", "status": 200, "n_records": 4}\n[1]\n{"torn": ')
    assert QueryLog.spent(tmp_path / "q.jsonl") == {"a": 7}
    assert QueryLog.spent(tmp_path / "none.jsonl") == {}
    assert records_digest(np.array([[-0.0, 1.0]])) == records_digest(np.array([[0.0, 1.0]]))
    assert records_digest(np.zeros((2, 2))) != records_digest(np.zeros((1, 4)))
    for host, local in [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
                        ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
                        ("example.com", False)]:  # fmt: skip
        assert is_loopback(host) is local, host
