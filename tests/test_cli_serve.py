"""``miaudit serve``: refusals, the app it builds, and a real server in a subprocess queried by HttpTarget."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import skops.io
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from miaudit.cli import app
from miaudit.cli_serve import build_service, open_socket
from miaudit.errors import ConfigError
from miaudit.targets.http import HttpTarget
from miaudit.targets.policies import top_k

runner = CliRunner()


@pytest.fixture(scope="module")
def skops_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LogisticRegression, np.ndarray]:
    """A logistic regression on 5 features and 3 classes (labels 10, 20, 30), saved with skops."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = np.array([10, 20, 30])[np.argmax(X[:, :3] + 0.3 * rng.normal(size=(300, 3)), axis=1)]
    est = LogisticRegression(max_iter=500).fit(X, y)
    path = tmp_path_factory.mktemp("serve") / "model.skops"
    skops.io.dump(est, path)
    return path, est, X


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.com"])
def test_a_non_loopback_host_needs_allow_remote(host: str) -> None:
    res = runner.invoke(app, ["serve", "no-such-model.skops", "--host", host])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert f"--host {host} is not a loopback address: the service would be reachable from other machines; pass " \
        "--allow-remote if that is meant" in text  # fmt: skip


def test_a_remote_service_needs_tokens(monkeypatch) -> None:
    monkeypatch.delenv("MIAUDIT_TOKEN", raising=False)
    res = runner.invoke(app, ["serve", "no-such-model.skops", "--host", "0.0.0.0", "--allow-remote"])
    assert res.exit_code == 2
    assert "a service reachable from other machines needs tokens: give --token-file or set $MIAUDIT_TOKEN" in " ".join(
        res.output.split()
    )


def test_loading_and_option_errors_are_one_line(tmp_path, skops_model) -> None:
    res = runner.invoke(app, ["serve", str(tmp_path / "missing.skops")])
    assert res.exit_code == 2 and "no model file at" in res.output
    res = runner.invoke(app, ["serve", str(skops_model[0]), "--output-policy", "top_k:9"])
    assert res.exit_code == 2 and "top_k's k=9 exceeds the model's 3 classes" in " ".join(res.output.split())
    res = runner.invoke(app, ["serve", str(skops_model[0]), "--rate-limit", "lots"])
    assert res.exit_code == 2 and "a rate limit is a positive number of records" in " ".join(res.output.split())
    res = runner.invoke(app, ["serve", str(skops_model[0]), "--token-file", str(tmp_path / "none.txt")])
    assert res.exit_code == 2 and "cannot read the token file" in " ".join(res.output.split())


def test_build_service_from_a_skops_file(skops_model) -> None:
    path, est, X = skops_model
    setup = build_service(path, tokens={"ops": "ops-token-123456"}, policy="rounding:3", max_batch=7)
    assert setup.policy == "rounding:3" and setup.token_ids == ["ops"]
    assert setup.description == "LogisticRegression(max_iter=500) from model.skops"
    from fastapi.testclient import TestClient

    with TestClient(setup.app) as client:
        info = client.get("/v1/model", headers={"Authorization": "Bearer ops-token-123456"}).json()
        assert info["classes"] == [10, 20, 30] and info["output"] == "rounded" and info["limits"]["max_batch"] == 7
        r = client.post("/v1/predict", headers={"Authorization": "Bearer ops-token-123456"},
                        json={"records": X[:4].tolist()})  # fmt: skip
    np.testing.assert_array_equal(np.array(r.json()["probabilities"]), np.round(est.predict_proba(X[:4]), 3))
    setup = build_service(path, tokens=None, classes=("low", "mid", "high"))
    with TestClient(setup.app) as client:
        assert client.get("/v1/model").json()["classes"] == ["low", "mid", "high"]
    with pytest.raises(ConfigError, match="--classes lists 2 labels; the model has 3 classes"):
        build_service(path, tokens=None, classes=("a", "b"))


def test_build_service_from_a_model_trained_by_miaudit(tmp_path) -> None:
    from safetensors.numpy import save_file

    from miaudit.targets import LocalTarget
    from miaudit.training.networks import build_module, params_from_module
    from miaudit.training.specs import ModelSpec

    spec = ModelSpec(n_features=4, n_classes=3, hidden=(6,))
    params = params_from_module(build_module(spec), spec)
    arrays = {f"w{i}": w for i, w in enumerate(params.weights)} | {f"b{i}": b for i, b in enumerate(params.biases)}
    path = tmp_path / "model.safetensors"  # what a study's cache stores: weights plus {"meta": {"spec": ...}}
    save_file(arrays, str(path), metadata={"meta": json.dumps({"spec": spec.to_dict(), "key": {}})})
    setup = build_service(path, tokens=None, input_shape=(2, 2))
    assert setup.description == "miaudit MLP (4, 6, 3) from model.safetensors"
    from fastapi.testclient import TestClient

    X = np.random.default_rng(1).normal(size=(5, 4))
    with TestClient(setup.app) as client:
        assert client.get("/v1/model").json()["input_shape"] == [2, 2]
        P = np.array(client.post("/v1/predict", json={"records": X.tolist()}).json()["probabilities"])
    np.testing.assert_array_equal(P, LocalTarget(params).predict_proba(X))
    with pytest.raises(ConfigError, match=r"--input-shape \(3, 3\) holds 9 values, not 4"):
        build_service(path, tokens=None, input_shape=(3, 3))
    save_file(arrays, str(path), metadata={"meta": json.dumps({"spec": {"n_features": 4}})})
    with pytest.raises(ConfigError, match="looks like a model trained by miaudit but cannot be read"):
        build_service(path, tokens=None)


def test_open_socket() -> None:
    with pytest.raises(ConfigError, match="--port must be an integer from 0 to 65535"):
        open_socket("127.0.0.1", 70000)
    sock = open_socket("127.0.0.1", 0)
    try:
        assert sock.getsockname()[0] == "127.0.0.1" and sock.getsockname()[1] > 0
    finally:
        sock.close()
    sock = open_socket("::1", 0)
    try:
        assert sock.family == socket.AF_INET6 and sock.getsockname()[0] == "::1"
    finally:
        sock.close()


def test_open_socket_refuses_a_taken_port() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port} .*; choose another --port"):
            open_socket("127.0.0.1", port)
    finally:
        taken.close()


def _read_lines(stream, lines: list[str]) -> None:
    for line in stream:
        lines.append(line)


def test_serve_in_a_subprocess_answers_http_target_and_stops(tmp_path, skops_model) -> None:
    path, est, X = skops_model
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("# who may query\nauditor:auditor-token-0123456789\n", encoding="utf-8")
    log = tmp_path / "queries.jsonl"
    cmd = [sys.executable, "-m", "miaudit", "serve", str(path), "--port", "0", "--token-file", str(tokens),
           "--output-policy", "top_k:2", "--query-log", str(log), "--max-batch", "16"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    try:
        deadline, url = time.monotonic() + 60, None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"at (http://127\.0\.0\.1:\d+) \(output policy top_k:2\)", "".join(lines))
            url = found.group(1) if found else None
            time.sleep(0.05)
        assert url is not None, "".join(lines)
        assert "tokens: auditor;" in "".join(lines)
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/v1/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        with HttpTarget(url, token="auditor-token-0123456789", batch_size=20, concurrency=2) as remote:
            assert remote.output == "top_k" and remote.classes == [10, 20, 30]
            P = remote.predict_proba(X[:50])
            assert remote.n_sent == 50
        np.testing.assert_array_equal(P, top_k(est.predict_proba(X[:50].astype(np.float32).astype(np.float64)), k=2))
        assert httpx.get(f"{url}/v1/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
    finally:
        proc.terminate()
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise
        reader.join(timeout=5)
    assert code == 0, "".join(lines)
    assert "stopped" in "".join(lines)
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    predicts = [e for e in entries if e["path"] == "/v1/predict"]
    # batches of 20 were refused as over --max-batch 16 and halved by the client: 413 then 10 + 10 + ...
    assert sum(e["n_records"] for e in predicts if e["status"] == 200) == 50
    assert {e["status"] for e in predicts} == {200, 413}
    assert {e["token"] for e in entries} == {"auditor", None} and "auditor-token" not in log.read_text()
