"""A model served on loopback for the length of a ``with`` block: studies attack it over HTTP as an outsider would.

:func:`served_target` starts the prediction service (:func:`miaudit.targets.service.create_app`, with the
output policy applied at the API) under uvicorn in a background thread on ``127.0.0.1`` and a free port, and
yields an :class:`~miaudit.targets.http.HttpTarget` talking to it. The server stops when the block ends.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from miaudit._extras import require_extra
from miaudit.errors import TargetError
from miaudit.targets.base import BlackBox

__all__ = ["served_target"]

#: seconds to wait for the server to start or stop
START_TIMEOUT = 20.0


@contextmanager
def served_target(
    target: BlackBox, *, policy: str = "full", batch_size: int = 1024, concurrency: int = 2
) -> Iterator[Any]:
    """Serve ``target`` on 127.0.0.1 (output ``policy`` applied by the service) and yield an HttpTarget to it.

    Raises
    ------
    TargetError
        The server did not start within :data:`START_TIMEOUT` seconds.
    """
    require_extra("uvicorn", "serve")
    import uvicorn

    from miaudit.targets.http import HttpTarget
    from miaudit.targets.service import create_app

    app = create_app(target, n_features=target.n_features, n_classes=target.n_classes, policy=policy)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="miaudit-served")
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise TargetError(f"the prediction service on 127.0.0.1:{port} did not start within {START_TIMEOUT:g} s")
        time.sleep(0.01)
    try:
        with HttpTarget(
            f"http://127.0.0.1:{port}", batch_size=batch_size, concurrency=concurrency, token_env="MIAUDIT_NO_TOKEN"
        ) as remote:
            yield remote
    finally:
        server.should_exit = True
        thread.join(timeout=START_TIMEOUT)
        sock.close()
