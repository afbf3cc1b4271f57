"""The reference prediction service: protocol 1 answers, validation, auth and error shapes, on 127.0.0.1."""

from __future__ import annotations

import json
import re

import httpx
import numpy as np
import pytest

from miaudit.errors import ConfigError
from miaudit.targets import LocalTarget
from miaudit.targets.service import create_app
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
        "output": "probabilities", "protocol": 1,
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
    with pytest.raises(ConfigError, match="output must be one of probabilities, labels; got 'top_k'"):
        create_app(t, n_features=4, n_classes=3, output="top_k")
    with pytest.raises(ConfigError, match="classes must list 3 labels; got 2"):
        create_app(t, n_features=4, n_classes=3, classes=["a", "b"])
    with pytest.raises(ConfigError, match=r"input_shape \(3, 3\) holds 9 values, not 4"):
        create_app(t, n_features=4, n_classes=3, input_shape=(3, 3))
    with pytest.raises(ConfigError, match="tokens must be None or a non-empty list"):
        create_app(t, n_features=4, n_classes=3, tokens=[])
