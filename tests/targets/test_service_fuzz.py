"""A bounded, seeded fuzz of the prediction service through its OpenAPI schema (schemathesis).

Requests that fit the schema (positive) and that break it (negative), with and without a valid token, are sent
to the app in process (ASGI). Whatever comes in: no 5xx, and every error answer is in the protocol's shape with a
documented status. About 400 cases, derandomized (the same cases every run).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.config._checks import NegativeDataRejectionConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from miaudit.targets import LocalTarget
from miaudit.targets.service import ERROR_CODES, create_app
from miaudit.training.networks import build_module, params_from_module
from miaudit.training.specs import ModelSpec

TOKEN = "fuzz-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: what each operation documents (plus 404/405, which the protocol documents for every path)
CODES = set(ERROR_CODES.values()) | {"budget_exhausted"}


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Any:
    spec = ModelSpec(n_features=2, n_classes=3, hidden=(4,))
    target = LocalTarget(params_from_module(build_module(spec), spec))
    log = tmp_path_factory.mktemp("fuzz") / "queries.jsonl"
    app = create_app(target, n_features=2, n_classes=3, tokens=[TOKEN], max_batch=16, policy="top_k:2",
                     budget=10**9, query_log=log)  # fmt: skip
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    # a body that breaks the schema may also be refused as too large before it is read: 413 is a rejection too
    rejections = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]
    loaded.config.checks.negative_data_rejection = NegativeDataRejectionConfig(expected_statuses=rejections)
    yield loaded
    app.state.query_log.close()
    assert log.read_text().count("\n") > 0


def _check_answer(response: Any, statuses: Counter[int]) -> None:
    statuses[response.status_code] += 1
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        assert body["error"]["code"] in CODES and isinstance(body["error"]["message"], str) and body["error"]["message"]
    else:
        assert response.headers["content-type"] == ["application/json"]


@pytest.mark.parametrize(
    ("path", "method", "mode", "n_cases", "authorised", "fit_width"),
    [
        ("/v1/predict", "POST", GenerationMode.POSITIVE, 100, True, False),
        ("/v1/predict", "POST", GenerationMode.POSITIVE, 100, True, True),
        ("/v1/predict", "POST", GenerationMode.NEGATIVE, 150, True, False),
        ("/v1/predict", "POST", GenerationMode.NEGATIVE, 40, False, False),
        ("/v1/model", "GET", GenerationMode.NEGATIVE, 30, False, False),
        ("/v1/model", "GET", GenerationMode.POSITIVE, 10, True, False),
        ("/v1/health", "GET", GenerationMode.POSITIVE, 10, False, False),
    ],
)
def test_fuzz_the_schema(
    schema, path: str, method: str, mode: GenerationMode, n_cases: int, authorised: bool, fit_width: bool
) -> None:
    """``fit_width``: each generated record cut or padded (with zeros) to the model's 2 features, so that the
    schema's numbers (huge, tiny, negative zero, integers) reach the model and the output policy."""
    operation = schema[path][method]
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=n_cases,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def run(case: Any) -> None:
        if fit_width:
            case.body = {"records": [[*r, 0.0, 0.0][:2] for r in case.body["records"]]}
        response = case.call_and_validate(
            headers=AUTH if authorised else None,
            excluded_checks=[positive_data_acceptance],  # a record's width is the model's, not the schema's
        )
        _check_answer(response, statuses)

    run()
    kind = f"{mode.value}{', widths fitted' if fit_width else ''}, {'with' if authorised else 'without'} a token"
    print(f"{method} {path} ({kind}): {sum(statuses.values())} cases, statuses {dict(sorted(statuses.items()))}")
    n = sum(statuses.values())
    assert n >= (n_cases // 2 if path == "/v1/predict" else 1), statuses  # GET requests have few distinct cases
    assert not any(status >= 500 for status in statuses)
    if path == "/v1/predict" and mode is GenerationMode.POSITIVE:
        assert statuses[200] > (n // 2 if fit_width else 0)  # answers were reached
        assert fit_width or statuses[422] > n // 2  # and so were refused widths
    if path == "/v1/predict" and mode is GenerationMode.NEGATIVE and authorised:
        assert statuses[422] > n // 2
    if not authorised and path != "/v1/health":
        assert statuses[401] > 0


def test_the_fuzz_reaches_answers_that_equal_the_model(schema) -> None:
    """A schema-valid case of the right width is answered with the model's top-2 probabilities."""
    case = schema["/v1/predict"]["POST"].Case(
        body={"records": [[0.25, -1.5], [3.0, 0.0]]}, media_type="application/json"
    )
    response = case.call(headers=AUTH)
    P = np.array(response.json()["probabilities"])
    assert P.shape == (2, 3) and ((P > 0).sum(axis=1) == 2).all() and (P.sum(axis=1) <= 1 + 1e-12).all()
