"""The TOML readers (audit files, study files) fuzzed: any bytes give a valid config or a ConfigError, never a crash."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miaudit.errors import ConfigError
from miaudit.studies.audit_config import AuditConfig, load_audit_config
from miaudit.studies.schema import StudyConfig, load_study

FUZZ = settings(
    max_examples=150, derandomize=True, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

#: TOML-looking text: keys of the real schemas with values of every TOML type, so that parsing succeeds often
#: and validation is what gets exercised
KEYS = st.sampled_from(
    ["model", "data", "members", "attacks", "seed", "n_refs", "shadows", "input_shape", "output_kind", "id", "title",
     "base", "grid", "quick", "train", "service", "attack_params", "trust", "n_boot", "dp_epsilon", "unknown"]
)  # fmt: skip
VALUES = st.sampled_from(
    ['"x"', '"lira"', "0", "-1", "1e400", "nan", "true", "[]", '["lira", "nope"]', "[1, 28, 28]", "[0]", "{}",
     '{ epochs = 0 }', '{ budget = -5 }', '{ lira = { n_refs = "a" } }', "1979-05-27", '""', "'http://h'"]
)  # fmt: skip
LINES = st.lists(st.tuples(KEYS, VALUES).map(lambda kv: f"{kv[0]} = {kv[1]}"), max_size=8).map("\n".join)


def _write(data: bytes) -> Path:
    f = tempfile.NamedTemporaryFile(suffix=".toml", delete=False)  # noqa: SIM115 - closed at once, read by path
    f.write(data)
    f.close()
    return Path(f.name)


def _check_audit(data: bytes) -> None:
    path = _write(data)
    try:
        assert isinstance(load_audit_config(path), AuditConfig)
    except ConfigError as exc:
        assert str(exc)
    finally:
        path.unlink()


def _check_study(data: bytes) -> None:
    path = _write(data)
    try:
        assert isinstance(load_study(path), StudyConfig)
    except ConfigError as exc:
        assert str(path) in str(exc) or "study config" in str(exc)
    finally:
        path.unlink()


@FUZZ
@given(st.binary(max_size=300))
def test_audit_file_from_any_bytes(data: bytes) -> None:
    _check_audit(data)


@FUZZ
@given(LINES)
def test_audit_file_from_toml_like_text(text: str) -> None:
    _check_audit(text.encode())


@FUZZ
@given(st.binary(max_size=300))
def test_study_file_from_any_bytes(data: bytes) -> None:
    _check_study(data)


@FUZZ
@given(LINES)
def test_study_file_from_toml_like_text(text: str) -> None:
    _check_study(text.encode())
