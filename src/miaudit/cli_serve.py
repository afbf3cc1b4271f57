"""``miaudit serve``: put a model behind a prediction service (``docs/http-protocol.md``), with its defences on.

The model is any file ``miaudit audit`` loads (``.skops``, ``.pt2``, ``.onnx``, ``.safetensors`` with
``--factory``) or a model trained by miaudit (an entry of a study's cache, ``.../model/<hash>.safetensors``).
The service binds 127.0.0.1 unless ``--allow-remote`` says otherwise; ``miaudit audit --model http://HOST:PORT``
attacks it as an outsider would.
"""

from __future__ import annotations

import json
import logging
import math
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from miaudit._extras import require_extra
from miaudit.errors import ConfigError, MiauditError
from miaudit.targets.base import Target

__all__ = ["ServeSetup", "build_service", "open_socket", "serve_command"]

logger = logging.getLogger(__name__)


@dataclass
class ServeSetup:
    """What ``miaudit serve`` serves: the app and the facts the start-up line reports."""

    app: Any
    description: str
    policy: str
    token_ids: list[str]


def _load_miaudit_model(path: Path) -> tuple[Target, int, int, str] | None:
    """A model trained by miaudit (a study cache's model entry: weights plus its spec), or None if not one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
            spec_fields = meta.get("spec") if isinstance(meta, dict) else None
            if not isinstance(spec_fields, dict):
                return None
            arrays = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except Exception:  # not readable as safetensors: load_model says what is wrong
        return None
    from miaudit.targets import LocalTarget
    from miaudit.training.networks import MLPParams
    from miaudit.training.specs import ModelSpec

    try:
        spec = ModelSpec(**spec_fields)
        n = len(spec.layer_sizes) - 1
        params = MLPParams(
            spec=spec,
            weights=tuple(arrays[f"w{i}"] for i in range(n)),
            biases=tuple(arrays[f"b{i}"] for i in range(n)),
        )
    except (TypeError, KeyError, ValueError) as exc:
        raise ConfigError(f"{path} looks like a model trained by miaudit but cannot be read ({exc})") from None
    return LocalTarget(params), spec.n_features, spec.n_classes, f"miaudit MLP {spec.layer_sizes} from {path.name}"


def _json_scalar(value: Any) -> Any:
    """A class label as a JSON scalar (numpy scalars become Python ones; anything else its string)."""
    value = value.item() if hasattr(value, "item") else value
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def build_service(
    model: str | Path,
    *,
    tokens: dict[str, str] | None,
    policy: str = "full",
    policy_seed: int = 0,
    rate_limit: str | None = None,
    burst: int | None = None,
    budget: int | None = None,
    max_batch: int = 4096,
    max_body_bytes: int | None = None,
    query_log: str | Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    output_kind: str = "auto",
    factory: str | None = None,
    trust: tuple[str, ...] = (),
    allow_unsafe_pickle: bool = False,
    classes: tuple[str, ...] | None = None,
) -> ServeSetup:
    """Load ``model`` and build the service's app (see :func:`miaudit.targets.service.create_app`).

    Raises
    ------
    ConfigError
        A model that cannot be loaded, classes that do not match it, or a bad limit or policy.
    """
    from miaudit.targets.loaders import load_model
    from miaudit.targets.policies import OutputPolicy
    from miaudit.targets.service import create_app

    path = Path(model)
    own = None
    if path.suffix.lower() == ".safetensors" and factory is None and path.is_file():
        own = _load_miaudit_model(path)
    if own is not None:
        target, n_features, n_classes, description = own
        labels: tuple[Any, ...] | None = None
        if input_shape is not None and math.prod(input_shape) != n_features:
            raise ConfigError(f"--input-shape {input_shape} holds {math.prod(input_shape)} values, not {n_features}")
    else:
        loaded = load_model(
            path,
            input_shape=input_shape,
            output_kind=output_kind,
            factory=factory,
            allow_unsafe_pickle=allow_unsafe_pickle,
            trusted=trust,
        )
        target, n_features, n_classes = loaded.target, loaded.n_features, loaded.n_classes
        labels, input_shape = loaded.classes, loaded.input_shape or input_shape
        description = loaded.description or path.name
    if classes is not None:
        if len(classes) != n_classes:
            raise ConfigError(f"--classes lists {len(classes)} labels; the model has {n_classes} classes")
        labels = classes
    the_policy = OutputPolicy.from_string(policy, seed=policy_seed)
    app = create_app(
        target,
        n_features=n_features,
        n_classes=n_classes,
        classes=[_json_scalar(c) for c in labels] if labels is not None else None,
        input_shape=input_shape,
        tokens=tokens,
        max_batch=max_batch,
        max_body_bytes=max_body_bytes,
        policy=the_policy,
        rate_limit=rate_limit,
        burst=burst,
        budget=budget,
        query_log=query_log,
    )
    return ServeSetup(app, description, the_policy.to_string(), list(tokens or {}))


def open_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free port, read back with ``getsockname()``)."""
    if type(port) is not int or not 0 <= port <= 65535:
        raise ConfigError(f"--port must be an integer from 0 to 65535 (0: any free port); got {port!r}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); check --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port") from None
    return sock


def _server_class(uvicorn: Any) -> Any:
    """uvicorn's Server, stopping gracefully on Ctrl+C or SIGTERM and then returning (exit status 0).

    uvicorn re-raises the signal after its graceful shutdown, which would end the process before the query log
    is closed and make Ctrl+C print a traceback.
    """

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            captured = getattr(self, "_captured_signals", None)
            if isinstance(captured, list):
                captured.clear()

    return Server


def _read_tokens(token_file: str | None) -> dict[str, str] | None:
    from miaudit.targets.service_limits import read_token_file, tokens_from_env

    return read_token_file(token_file) if token_file is not None else tokens_from_env()


def serve_command(
    model: str = typer.Argument(..., help="Model file (.skops .pt2 .safetensors .onnx), or a miaudit model."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback unless --allow-remote)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: any free port, printed at start)."),
    token_file: str | None = typer.Option(
        None, "--token-file", help="Accepted tokens, one per line: token or name:token (default: $MIAUDIT_TOKEN)."
    ),
    output_policy: str = typer.Option(
        "full",
        "--output-policy",
        help="What answers reveal: full, top_k:3, rounding:2, temperature:4, label_only, noise:0.1[:gaussian].",
    ),
    policy_seed: int = typer.Option(0, "--policy-seed", help="Seed of the noise policy's noise."),
    rate_limit: str | None = typer.Option(None, "--rate-limit", help="Records per token, e.g. 100/s or 6000/min."),
    burst: int | None = typer.Option(None, "--burst", help="Records a token may send at once (default: 1 s worth)."),
    budget: int | None = typer.Option(None, "--budget", help="Records answered per token in total."),
    max_batch: int = typer.Option(4096, "--max-batch", help="Most records in one request."),
    max_body_bytes: int | None = typer.Option(None, "--max-body-bytes", help="Most bytes in one request body."),
    query_log: str | None = typer.Option(None, "--query-log", help="Append one JSON line per request here."),
    allow_remote: bool = typer.Option(
        False, "--allow-remote", help="Allow a --host other machines can reach (then tokens are required)."
    ),
    input_shape: str | None = typer.Option(None, "--input-shape", help="What the model takes, e.g. 1,28,28."),
    output_kind: str = typer.Option("auto", "--output-kind", help="auto | probabilities | logits."),
    factory: str | None = typer.Option(None, "--factory", help="package.module:callable building the module."),
    trust: list[str] = typer.Option([], "--trust", help="A skops type to trust (repeatable)."),  # noqa: B008
    allow_unsafe_pickle: bool = typer.Option(
        False, "--allow-unsafe-pickle", help="Load a pickle/joblib model: runs any code it holds. Only your own files."
    ),
    classes: str | None = typer.Option(None, "--classes", help="Comma-separated class labels, in output order."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details (and uvicorn's access lines)."),
) -> None:
    """Serve a model over HTTP with access control, limits, a query log and an output policy."""
    from miaudit.cli import _fail, _setup_logging, console
    from miaudit.cli_audit import _csv_ints
    from miaudit.targets.service_limits import TOKEN_ENV, is_loopback

    _setup_logging(verbose)
    try:
        tokens = _read_tokens(token_file)
        if not is_loopback(host):
            if not allow_remote:
                raise ConfigError(
                    f"--host {host} is not a loopback address: the service would be reachable from other machines; "
                    "pass --allow-remote if that is meant (and put it behind TLS), or keep --host 127.0.0.1"
                )
            if tokens is None:
                raise ConfigError(
                    f"a service reachable from other machines needs tokens: give --token-file or set ${TOKEN_ENV}"
                )
        uvicorn = require_extra("uvicorn", "serve")
        setup = build_service(
            model,
            tokens=tokens,
            policy=output_policy,
            policy_seed=policy_seed,
            rate_limit=rate_limit,
            burst=burst,
            budget=budget,
            max_batch=max_batch,
            max_body_bytes=max_body_bytes,
            query_log=query_log,
            input_shape=_csv_ints(input_shape, "--input-shape"),
            output_kind=output_kind,
            factory=factory,
            trust=tuple(trust),
            allow_unsafe_pickle=allow_unsafe_pickle,
            classes=tuple(c.strip() for c in classes.split(",")) if classes else None,
        )
        sock = open_socket(host, port)
    except (MiauditError, ValueError) as exc:
        _fail(exc)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    if tokens is None:
        logger.warning("serving without tokens: anyone on this machine can query the model")
    say = lambda s: console.print(s, highlight=False, markup=False, soft_wrap=True)  # noqa: E731
    say(f"serving {setup.description} at http://{shown}:{bound[1]} (output policy {setup.policy})")
    say(
        f"tokens: {', '.join(setup.token_ids) if tokens else 'none (no authentication)'}; "
        f"rate limit: {rate_limit or 'none'}; budget: {budget or 'none'} records per token; "
        f"query log: {query_log or 'none'}"
    )
    say("stop with Ctrl+C")
    console.file.flush()
    config = uvicorn.Config(
        setup.app,
        log_level="info" if verbose else "warning",
        access_log=verbose,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
    try:
        _server_class(uvicorn)(config).run(sockets=[sock])
    finally:
        sock.close()
        if setup.app.state.query_log is not None:
            setup.app.state.query_log.close()
    say("stopped")
