"""Loading users' models from files: each format with a small real model, and every refusal and error.

The ONNX files are written by a minimal protobuf encoder below (the ``onnx`` package is not a dependency, and
``torch.onnx.export`` needs it); onnxruntime reads them like any exported model.
"""

from __future__ import annotations

import json
import logging
import sys
import textwrap
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import safetensors.torch
import skops.io
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from miaudit.errors import ConfigError, DataError, TargetError
from miaudit.targets import BlackBox, LoadedModel, import_factory, load_model, load_outputs, wrap_model

FACTORY_MODULE = "miaudit_test_user_models"
FACTORY_SOURCE = """
import torch

def mlp():
    return torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))

def mlp_softmax():
    return torch.nn.Sequential(mlp(), torch.nn.Softmax(dim=1))

def cnn():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(256, 10)
    )

def wider():
    layers = [torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10), torch.nn.Linear(10, 10)]
    return torch.nn.Sequential(*layers)

class Nan(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 3)

    def forward(self, x):
        return self.lin(x) * float("nan")

def broken():
    raise RuntimeError("needs a GPU")

def not_a_module():
    return 42

NOT_CALLABLE = 3
"""


@pytest.fixture
def factory_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's own module of model factories, importable as FACTORY_MODULE."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / f"{FACTORY_MODULE}.py").write_text(textwrap.dedent(FACTORY_SOURCE))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, FACTORY_MODULE, raising=False)
    return folder


def _seeded(factory: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    module = import_factory(f"{FACTORY_MODULE}:{factory}")()
    return module.eval()


def _softmax_of(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(module(torch.as_tensor(x)).double(), dim=1).numpy()


# ------------------------------------------------------------------------------------------- scikit-learn
def test_skops_logistic_regression(tmp_path: Path, digits) -> None:
    X, y = digits
    est = LogisticRegression(C=0.5, max_iter=300).fit(X[:500], y[:500])
    skops.io.dump(est, tmp_path / "model.skops")
    loaded = load_model(tmp_path / "model.skops")
    assert isinstance(loaded, LoadedModel) and isinstance(loaded.target, BlackBox)
    assert (loaded.family, loaded.n_features, loaded.n_classes) == ("sklearn", 64, 10)
    assert loaded.classes == tuple(range(10)) and loaded.input_shape is None and loaded.module_factory is None
    assert loaded.output_kind == "probabilities"
    assert loaded.description == "LogisticRegression(C=0.5, max_iter=300) from model.skops"
    assert loaded.estimator.get_params()["C"] == 0.5
    np.testing.assert_allclose(loaded.target.predict_proba(X[500:600]), est.predict_proba(X[500:600]), atol=1e-12)
    assert loaded.target.n_queries == 100


def test_skops_refuses_untrusted_types_unless_named(tmp_path: Path, digits) -> None:
    X, y = digits
    est = RandomForestClassifier(n_estimators=5, random_state=0).fit(X[:300], y[:300] % 3)
    skops.io.dump(est, tmp_path / "forest.skops")
    with pytest.raises(ConfigError, match=r"forest.skops contains types that skops does not trust.*sklearn.tree"):
        load_model(tmp_path / "forest.skops")
    with pytest.raises(ConfigError, match=r"--trust sklearn\.tree\._tree\.Tree"):
        load_model(tmp_path / "forest.skops", trusted=["numpy.dtype"])
    loaded = load_model(tmp_path / "forest.skops", trusted=["sklearn.tree._tree.Tree"])
    assert loaded.classes == (0, 1, 2)
    np.testing.assert_allclose(loaded.target.predict_proba(X[:50]), est.predict_proba(X[:50]), atol=1e-12)
    assert loaded.target.answers_ is not None


def test_estimator_with_decision_function_only(tmp_path: Path, digits) -> None:
    X, y = digits
    est = LinearSVC(max_iter=3000).fit(X[:400], y[:400])
    loaded = wrap_model(est)
    assert loaded.output_kind == "logits"
    assert "decision_function scores turned into probabilities by a softmax" in loaded.description
    d = est.decision_function(X[:10])
    want = np.exp(d - d.max(1, keepdims=True))
    np.testing.assert_allclose(loaded.target.predict_proba(X[:10]), want / want.sum(1, keepdims=True), atol=1e-12)


def test_estimator_errors(tmp_path: Path, digits) -> None:
    X, y = digits
    skops.io.dump(LogisticRegression(), tmp_path / "unfitted.skops")
    with pytest.raises(ConfigError, match="LogisticRegression is not fitted; fit it before auditing"):
        load_model(tmp_path / "unfitted.skops")
    est = LogisticRegression(max_iter=100).fit(X[:200], y[:200])
    with pytest.raises(ConfigError, match="fitted on 64 features but n_features=32"):
        wrap_model(est, n_features=32)
    with pytest.raises(ConfigError, match="outputs 10 classes but n_classes=3"):
        wrap_model(est, n_classes=3)
    with pytest.raises(ConfigError, match="holds a dict, which is not a classifier"):
        joblib.dump({"a": 1}, tmp_path / "d.joblib")
        load_model(tmp_path / "d.joblib", allow_unsafe_pickle=True)


def test_pickles_are_refused_unless_allowed(tmp_path: Path, digits, caplog: pytest.LogCaptureFixture) -> None:
    X, y = digits
    est = LogisticRegression(max_iter=100).fit(X[:200], y[:200])
    for suffix in (".pkl", ".pickle", ".joblib"):
        joblib.dump(est, tmp_path / f"model{suffix}")
        with pytest.raises(ConfigError, match=rf"model\{suffix} is a pickle, and unpickling runs arbitrary code"):
            load_model(tmp_path / f"model{suffix}")
    with pytest.raises(ConfigError, match=r"skops\.io\.dump\(model, 'model\.skops'\)"):
        load_model(tmp_path / "model.pkl")
    with caplog.at_level(logging.WARNING, logger="miaudit.targets.loaders"):
        loaded = load_model(tmp_path / "model.pkl", allow_unsafe_pickle=True)
    assert "runs any code the file contains" in caplog.text
    np.testing.assert_allclose(loaded.target.predict_proba(X[:5]), est.predict_proba(X[:5]), atol=1e-12)


# ------------------------------------------------------------------------------------------------- torch
def test_safetensors_mlp_with_factory(tmp_path: Path, factory_path: Path, digits) -> None:
    X, _ = digits
    module = _seeded("mlp", 0)
    safetensors.torch.save_file(module.state_dict(), tmp_path / "mlp.safetensors")
    loaded = load_model(tmp_path / "mlp.safetensors", factory=f"{FACTORY_MODULE}:mlp")
    assert (loaded.family, loaded.n_features, loaded.n_classes, loaded.input_shape) == ("torch", 64, 10, None)
    assert loaded.output_kind == "logits" and loaded.classes is None
    assert loaded.description == "Sequential from mlp.safetensors (outputs logits, detected)"
    np.testing.assert_allclose(loaded.target.predict_proba(X[:100]), _softmax_of(module, X[:100]), rtol=0, atol=1e-6)
    fresh = loaded.module_factory()  # an untrained module of the same architecture
    assert isinstance(fresh, torch.nn.Sequential) and fresh[0].weight.shape == (16, 64)
    # a module ending in softmax: detected as probabilities, the same answers (no double softmax)
    sm = _seeded("mlp_softmax", 0)
    safetensors.torch.save_file(sm.state_dict(), tmp_path / "sm.safetensors")
    loaded_sm = load_model(tmp_path / "sm.safetensors", factory=f"{FACTORY_MODULE}:mlp_softmax")
    assert loaded_sm.output_kind == "probabilities"
    np.testing.assert_allclose(
        loaded_sm.target.predict_proba(X[:100]), loaded.target.predict_proba(X[:100]), rtol=0, atol=1e-6
    )


def test_cnn_weights_need_an_input_shape(tmp_path: Path, factory_path: Path, digits) -> None:
    X, _ = digits
    cnn = _seeded("cnn", 1)
    safetensors.torch.save_file(cnn.state_dict(), tmp_path / "cnn.safetensors")
    with pytest.raises(ConfigError, match=r"its first layer is not Linear\); pass input_shape \(--input-shape"):
        load_model(tmp_path / "cnn.safetensors", factory=f"{FACTORY_MODULE}:cnn")
    loaded = load_model(tmp_path / "cnn.safetensors", factory=f"{FACTORY_MODULE}:cnn", input_shape=(1, 8, 8))
    assert (loaded.n_features, loaded.input_shape) == (64, (1, 8, 8))
    want = _softmax_of(cnn, X[:64].reshape(-1, 1, 8, 8))
    np.testing.assert_allclose(loaded.target.predict_proba(X[:64]), want, rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match=r"input_shape \(1, 8, 7\) holds 56 values but the records have 64"):
        load_model(tmp_path / "cnn.safetensors", factory=f"{FACTORY_MODULE}:cnn", input_shape=(1, 8, 7), n_features=64)
    probe = r"(?s)^Sequential from cnn.safetensors: the module failed on a batch of shape \(2, 1, 4, 14\): RuntimeError"
    with pytest.raises(ConfigError, match=probe + r".*a probe of zero records of shape \(1, 4, 14\)"):
        load_model(tmp_path / "cnn.safetensors", factory=f"{FACTORY_MODULE}:cnn", input_shape=(1, 4, 14))


def test_weights_that_do_not_fit_the_factory(tmp_path: Path, factory_path: Path) -> None:
    safetensors.torch.save_file(_seeded("mlp", 0).state_dict(), tmp_path / "mlp.safetensors")
    with pytest.raises(ConfigError, match=r"do not fit the module built by .*:wider: missing keys: 3\.bias, 3\.weight"):
        load_model(tmp_path / "mlp.safetensors", factory=f"{FACTORY_MODULE}:wider")
    with pytest.raises(
        ConfigError, match=r"shapes \(file vs module\): 0\.bias \(16,\) vs \(32,\); 0\.weight \(16, 64\) vs \(32, 64\)"
    ):
        load_model(tmp_path / "mlp.safetensors", factory=f"{FACTORY_MODULE}:wider")
    with pytest.raises(ConfigError, match=r"unexpected keys: 0\.bias, 0\.weight, 2\.bias, 2\.weight"):
        load_model(tmp_path / "mlp.safetensors", factory=f"{FACTORY_MODULE}:mlp_softmax")


def test_factory_errors(tmp_path: Path, factory_path: Path) -> None:
    weights = tmp_path / "mlp.safetensors"
    safetensors.torch.save_file(_seeded("mlp", 0).state_dict(), weights)
    with pytest.raises(ConfigError, match=r"mlp.safetensors holds weights only; pass factory='package.module"):
        load_model(weights)
    cases = {
        "mlp": "factory must look like 'package.module:callable'; got 'mlp'",
        "no_such_pkg.models:mlp": "cannot import the factory's module 'no_such_pkg.models': no module 'no_such_pkg'",
        f"{FACTORY_MODULE}:nope": f"module '{FACTORY_MODULE}' has no attribute 'nope'",
        f"{FACTORY_MODULE}:NOT_CALLABLE": "is a int, not a callable that builds a module",
        f"{FACTORY_MODULE}:broken": "raised RuntimeError: needs a GPU; it must build the module with no arguments",
        f"{FACTORY_MODULE}:not_a_module": "returned a int, not a torch.nn.Module",
    }
    for spec, message in cases.items():
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            load_model(weights, factory=spec)


def test_pt_state_dicts_load_and_pickled_modules_are_refused(
    tmp_path: Path, factory_path: Path, digits, caplog: pytest.LogCaptureFixture
) -> None:
    X, _ = digits
    module = _seeded("mlp", 3)
    torch.save(module.state_dict(), tmp_path / "weights.pt")
    torch.save({"state_dict": module.state_dict(), "epoch": 7}, tmp_path / "checkpoint.pth")
    for name in ("weights.pt", "checkpoint.pth"):
        loaded = load_model(tmp_path / name, factory=f"{FACTORY_MODULE}:mlp")
        np.testing.assert_allclose(loaded.target.predict_proba(X[:20]), _softmax_of(module, X[:20]), atol=1e-6)
    torch.save(module, tmp_path / "whole.pt")
    with pytest.raises(ConfigError, match="whole.pt holds pickled objects .* unpickling runs code from the file"):
        load_model(tmp_path / "whole.pt")
    with caplog.at_level(logging.WARNING, logger="miaudit.targets.loaders"):
        loaded = load_model(tmp_path / "whole.pt", allow_unsafe_pickle=True)
    assert "unpickling" in caplog.text and loaded.module_factory is None
    np.testing.assert_allclose(loaded.target.predict_proba(X[:20]), _softmax_of(module, X[:20]), atol=1e-6)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"garbage.pt: not a file written by torch.save"):
        load_model(tmp_path / "garbage.pt", factory=f"{FACTORY_MODULE}:mlp")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(DataError, match="list.pt: holds a list, not a state dict of tensors"):
        load_model(tmp_path / "list.pt", factory=f"{FACTORY_MODULE}:mlp")


# ---------------------------------------------------------------------------------------------- torch.export
def test_exported_programs(tmp_path: Path, factory_path: Path, digits) -> None:
    X, _ = digits
    mlp = _seeded("mlp", 4)
    batch = torch.export.Dim("batch")
    program = torch.export.export(mlp, (torch.as_tensor(X[:8]),), dynamic_shapes=({0: batch},))
    torch.export.save(program, tmp_path / "mlp.pt2")
    loaded = load_model(tmp_path / "mlp.pt2")
    assert (loaded.family, loaded.n_features, loaded.n_classes, loaded.input_shape) == ("torch", 64, 10, None)
    assert loaded.module_factory is None and loaded.output_kind == "logits"
    np.testing.assert_allclose(loaded.target.predict_proba(X[:77]), _softmax_of(mlp, X[:77]), rtol=0, atol=1e-6)
    # a CNN ending in softmax, exported with a fixed batch of 4: the shape comes from the example input
    cnn = torch.nn.Sequential(_seeded("cnn", 5), torch.nn.Softmax(dim=1)).eval()
    torch.export.save(torch.export.export(cnn, (torch.zeros(4, 1, 8, 8),)), tmp_path / "cnn.pt2")
    loaded = load_model(tmp_path / "cnn.pt2")
    assert (loaded.n_features, loaded.input_shape, loaded.output_kind) == (64, (1, 8, 8), "probabilities")
    with torch.no_grad():
        want = cnn(torch.as_tensor(X[:10]).reshape(-1, 1, 8, 8)).double().numpy()
    np.testing.assert_allclose(loaded.target.predict_proba(X[:10]), want, rtol=0, atol=1e-6)  # 10 = 4 + 4 + 2
    assert (
        loaded.description
        == "GraphModule from cnn.pt2, exported with a fixed batch of 4 (outputs probabilities, detected)"
    )


def test_exported_in_training_mode_is_warned(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
    for mode, warned in ((module.train, True), (module.eval, False)):
        mode()
        torch.export.save(torch.export.export(module, (torch.zeros(2, 64),)), tmp_path / "d.pt2")
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="miaudit.targets.loaders"):
            load_model(tmp_path / "d.pt2")
        assert ("exported in training mode (dropout active)" in caplog.text) is warned


def _rewrite_zip(src: Path, dst: Path, edit: dict[str, bytes]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit.get(info.filename.split("/", 1)[1], zin.read(info.filename)))


def test_exported_programs_with_pickled_parts_are_refused(tmp_path: Path, digits) -> None:
    torch.manual_seed(0)
    program = torch.export.export(torch.nn.Linear(64, 3), (torch.zeros(2, 64),))
    torch.export.save(program, tmp_path / "plain.pt2")
    with zipfile.ZipFile(tmp_path / "plain.pt2") as zf:
        config_name = next(n for n in zf.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(zf.read(config_name))
    for meta in config["config"].values():
        meta["use_pickle"] = True
    _rewrite_zip(
        tmp_path / "plain.pt2", tmp_path / "pickled.pt2", {config_name.split("/", 1)[1]: json.dumps(config).encode()}
    )
    with pytest.raises(ConfigError, match=r"pickled.pt2 has parts that torch.export.load would unpickle \(.*weights"):
        load_model(tmp_path / "pickled.pt2")
    (tmp_path / "garbage.pt2").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="garbage.pt2: not a torch.export archive"):
        load_model(tmp_path / "garbage.pt2")
    loaded = load_model(tmp_path / "plain.pt2")  # the untouched archive loads
    assert loaded.n_classes == 3


# ---------------------------------------------------------------------------------------------------- ONNX
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes | str | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor(name: str, a: np.ndarray) -> bytes:  # onnx TensorProto, float32
    dims = b"".join(_field(1, d) for d in a.shape)
    return dims + _field(2, 1) + _field(8, name) + _field(9, np.ascontiguousarray(a, dtype="<f4").tobytes())


def _value_info(name: str, shape: list[int | str]) -> bytes:
    dims = b"".join(_field(1, _field(2, d) if isinstance(d, str) else _field(1, d)) for d in shape)
    return _field(1, name) + _field(2, _field(1, _field(1, 1) + _field(2, dims)))


def _node(op: str, inputs: list[str], outputs: list[str], **ints: int) -> bytes:
    attrs = b"".join(_field(5, _field(1, k) + _field(3, v) + _field(20, 2)) for k, v in ints.items())
    return b"".join(_field(1, i) for i in inputs) + b"".join(_field(2, o) for o in outputs) + _field(4, op) + attrs


def write_onnx_mlp(path: Path, module: torch.nn.Module, *, input_shape: list[int | str], softmax: bool = False) -> None:
    """The ONNX graph of Flatten -> Linear -> ReLU -> Linear (-> Softmax), with the weights of ``module``."""
    lin1, lin2 = module[0], module[2]
    params = {
        "W1": lin1.weight.detach().numpy().T,
        "b1": lin1.bias.detach().numpy(),
        "W2": lin2.weight.detach().numpy().T,
        "b2": lin2.bias.detach().numpy(),
    }
    nodes = [
        _node("Flatten", ["x"], ["f"], axis=1),
        _node("MatMul", ["f", "W1"], ["h"]),
        _node("Add", ["h", "b1"], ["h1"]),
        _node("Relu", ["h1"], ["r"]),
        _node("MatMul", ["r", "W2"], ["o"]),
        _node("Add", ["o", "b2"], ["z"]),
    ]
    nodes.append(_node("Softmax", ["z"], ["y"], axis=1) if softmax else _node("Identity", ["z"], ["y"]))
    graph = b"".join(_field(1, n) for n in nodes) + _field(2, "mlp")
    graph += b"".join(_field(5, _tensor(k, v)) for k, v in params.items())
    graph += _field(11, _value_info("x", input_shape)) + _field(12, _value_info("y", [input_shape[0], 10]))
    path.write_bytes(
        _field(1, 8) + _field(2, "miaudit-tests") + _field(7, graph) + _field(8, _field(1, "") + _field(2, 17))
    )


def test_onnx_models(tmp_path: Path, factory_path: Path, digits) -> None:
    X, _ = digits
    mlp = _seeded("mlp", 6)
    write_onnx_mlp(tmp_path / "dynamic.onnx", mlp, input_shape=["batch", 1, 8, 8])
    loaded = load_model(tmp_path / "dynamic.onnx")
    assert (loaded.family, loaded.n_features, loaded.n_classes, loaded.input_shape) == ("onnx", 64, 10, (1, 8, 8))
    assert loaded.output_kind == "logits" and loaded.description.startswith("ONNX model dynamic.onnx (dynamic batch)")
    np.testing.assert_allclose(loaded.target.predict_proba(X[:50]), _softmax_of(mlp, X[:50]), rtol=0, atol=1e-5)
    write_onnx_mlp(tmp_path / "fixed.onnx", mlp, input_shape=[4, 64], softmax=True)
    loaded = load_model(tmp_path / "fixed.onnx")
    assert loaded.output_kind == "probabilities" and loaded.input_shape is None
    assert "(fixed batch 4)" in loaded.description
    np.testing.assert_allclose(loaded.target.predict_proba(X[:10]), _softmax_of(mlp, X[:10]), rtol=0, atol=1e-5)
    assert loaded.target.n_queries == 10
    write_onnx_mlp(tmp_path / "symbolic.onnx", mlp, input_shape=["batch", "c", "h", "w"])
    with pytest.raises(ConfigError, match=r"symbolic.onnx declares its input as .* pass input_shape \(--input-shape\)"):
        load_model(tmp_path / "symbolic.onnx")
    loaded = load_model(tmp_path / "symbolic.onnx", input_shape=(1, 8, 8))
    np.testing.assert_allclose(loaded.target.predict_proba(X[:5]), _softmax_of(mlp, X[:5]), rtol=0, atol=1e-5)
    with pytest.raises(
        ConfigError, match=r"dynamic.onnx takes records of shape \(1, 8, 8\), not input_shape \(2, 16\)"
    ):
        load_model(tmp_path / "dynamic.onnx", input_shape=(2, 16))
    (tmp_path / "garbage.onnx").write_bytes(b"garbage")
    with pytest.raises(DataError, match="garbage.onnx: onnxruntime cannot read it as an ONNX model"):
        load_model(tmp_path / "garbage.onnx")


def test_torch_onnx_export_when_available(tmp_path: Path, factory_path: Path, digits) -> None:
    pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package (and onnxscript), not installed")
    X, _ = digits
    mlp = _seeded("mlp", 7)
    torch.onnx.export(
        mlp, (torch.zeros(2, 64),), tmp_path / "m.onnx", input_names=["x"], dynamic_axes={"x": {0: "n"}}, dynamo=False
    )
    loaded = load_model(tmp_path / "m.onnx")
    np.testing.assert_allclose(loaded.target.predict_proba(X[:9]), _softmax_of(mlp, X[:9]), rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------ files and options
def test_missing_unknown_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no model file at .*nothing.skops; give the path of a model file"):
        load_model(tmp_path / "nothing.skops")
    with pytest.raises(ConfigError, match="is a folder"):
        load_model(tmp_path)
    (tmp_path / "model.h5").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"unknown suffix '\.h5'; the accepted ones are \.skops, \.onnx, \.pt2"):
        load_model(tmp_path / "model.h5")
    (tmp_path / "bad.skops").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.skops: not a readable skops file .*save the model with skops.io.dump"):
        load_model(tmp_path / "bad.skops")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.safetensors: not a readable safetensors file"):
        load_model(tmp_path / "bad.safetensors", factory="x:y")
    with pytest.raises(ConfigError, match="output_kind must be one of auto, probabilities, logits; got 'loss'"):
        load_model(tmp_path / "bad.skops", output_kind="loss")
    with pytest.raises(ConfigError, match="n_classes must be a positive integer; got 0"):
        load_model(tmp_path / "bad.skops", n_classes=0)


def test_garbage_answers_name_the_model(tmp_path: Path, factory_path: Path, digits) -> None:
    X, _ = digits
    torch.manual_seed(0)
    safetensors.torch.save_file(import_factory(f"{FACTORY_MODULE}:Nan")().state_dict(), tmp_path / "nan.safetensors")
    loaded = load_model(tmp_path / "nan.safetensors", factory=f"{FACTORY_MODULE}:Nan")
    with pytest.raises(TargetError, match=r"^Nan from nan.safetensors: the target answered 15 NaN or infinite"):
        loaded.target.predict_proba(X[:5])


# ------------------------------------------------------------------------------------------- stored outputs
def _probs(n: int, c: int, seed: int) -> np.ndarray:
    z = np.random.default_rng(seed).normal(size=(n, c))
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def test_load_outputs_csv_parquet_npz(tmp_path: Path) -> None:
    P = _probs(6, 3, seed=0)
    ids = [f"r{i}" for i in range(6)]
    lines = ["id,cat,dog,bird"] + [
        f"{i},{','.join(repr(float(v)) for v in row)}" for i, row in zip(ids, P, strict=True)
    ]
    (tmp_path / "p.csv").write_text("\n".join(lines) + "\n")
    out = load_outputs(tmp_path / "p.csv")
    assert (out.kind, out.columns, out.n_classes, len(out)) == ("probabilities", ("cat", "dog", "bird"), 3, 6)
    np.testing.assert_array_equal(out.values, P)
    np.testing.assert_array_equal(out.align(["r5", "r0"]), P[[5, 0]])
    with pytest.raises(DataError, match=r"no output for 2 of 3 records \(ids x, y\)"):
        out.align(["r1", "x", "y"])
    logits = np.log(P) + 3.0
    (tmp_path / "z.csv").write_text(
        "key,a,b,c\n" + "\n".join(f"{i},{a},{b},{c}" for i, (a, b, c) in zip(ids, logits, strict=True))
    )
    z = load_outputs(tmp_path / "z.csv", id_column="key")
    assert z.kind == "logits"
    np.testing.assert_allclose(z.probabilities(), P, atol=1e-12)
    (tmp_path / "loss.csv").write_text("id,loss\na,0.5\nb,2.25\n")
    loss = load_outputs(tmp_path / "loss.csv")
    assert loss.kind == "loss" and loss.n_classes is None
    np.testing.assert_array_equal(loss.values, [0.5, 2.25])
    with pytest.raises(ConfigError, match="holds losses, not class outputs"):
        loss.probabilities()
    np.savez(tmp_path / "o.npz", ids=np.array(ids), logits=logits)
    npz = load_outputs(tmp_path / "o.npz")
    assert npz.kind == "logits" and npz.ids.tolist() == ids
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": list(range(6)), "0": P[:, 0], "1": P[:, 1], "2": P[:, 2]}), tmp_path / "p.parquet")
    pqo = load_outputs(tmp_path / "p.parquet", kind="probabilities")
    assert pqo.ids.tolist() == [str(i) for i in range(6)]
    np.testing.assert_array_equal(pqo.values, P)


def test_load_outputs_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no outputs file at"):
        load_outputs(tmp_path / "none.csv")
    (tmp_path / "o.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"the accepted suffixes are \.csv, \.parquet, \.npz"):
        load_outputs(tmp_path / "o.json")
    with pytest.raises(ConfigError, match="output_kind must be one of auto, probabilities, logits, loss"):
        load_outputs(tmp_path / "o.json", kind="scores")
    bad = {
        "noid.csv": ("a,b\n0.5,0.5\n", "no id column 'id'"),
        "dup.csv": ("id,a,b\nx,0.5,0.5\nx,0.2,0.8\n", r"duplicate record ids \(x\)"),
        "text.csv": ("id,a,b\nx,0.5,high\n", "column 'b' has a value that is not a number"),
        "nan.csv": ("id,a,b\nx,0.5,nan\n", "1 NaN or infinite values"),
        "ragged.csv": ("id,a,b\nx,0.5\n", "row 2 has a different number of fields"),
        "empty.csv": ("", "the file is empty"),
        "nothing.csv": ("id\nx\n", "no value columns beside 'id'"),
        "lossplus.csv": ("id,loss,a\nx,1,2\n", "a loss column goes alone"),
        "notprob.csv": ("id,a,b\nx,0.7,0.7\n", "kind 'probabilities' but the model's outputs look like logits"),
    }
    for name, (text, message) in bad.items():
        (tmp_path / name).write_text(text)
        kind = "probabilities" if name == "notprob.csv" else "auto"
        with pytest.raises(DataError, match=message):
            load_outputs(tmp_path / name, kind=kind)
    np.savez(tmp_path / "noids.npz", logits=np.zeros((2, 2)))
    with pytest.raises(DataError, match="no array 'ids'"):
        load_outputs(tmp_path / "noids.npz")
    np.savez(tmp_path / "obj.npz", ids=np.array([object(), 1], dtype=object), loss=np.zeros(2))
    with pytest.raises(DataError, match="object arrays, which would need pickle"):
        load_outputs(tmp_path / "obj.npz")
    np.savez(tmp_path / "two.npz", ids=np.array(["a"]), loss=np.zeros(1), logits=np.zeros((1, 2)))
    with pytest.raises(DataError, match="exactly one of the arrays probabilities, logits or loss"):
        load_outputs(tmp_path / "two.npz")
    np.savez(tmp_path / "l.npz", ids=np.array(["a"]), loss=np.zeros(1))
    with pytest.raises(DataError, match="holds loss values but kind='logits' was asked"):
        load_outputs(tmp_path / "l.npz", kind="logits")
    (tmp_path / "bad.parquet").write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.parquet: not a readable Parquet file"):
        load_outputs(tmp_path / "bad.parquet")
    # defended answers stored as probabilities are accepted
    (tmp_path / "top1.csv").write_text("id,a,b,c\nx,0.9,0,0\ny,0,0.6,0\n")
    assert load_outputs(tmp_path / "top1.csv", kind="probabilities").kind == "probabilities"
