"""A live prediction service for the HTTP tests: uvicorn on 127.0.0.1, in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class LiveServer:
    """One uvicorn server running ``app`` on 127.0.0.1:``port`` in a thread."""

    app: Any
    port: int
    server: Any = None
    thread: threading.Thread | None = None
    stopped: bool = field(default=True)
    sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.sock = sock
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        self.stopped = False
        return self

    def stop(self) -> None:
        """Stop the server and wait for its thread (its port is free again afterwards)."""
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)
            assert not self.thread.is_alive(), "the test server did not stop"
        if self.sock is not None:
            self.sock.close()  # asyncio closed it already; closing twice is harmless
        self.stopped = True


def _servers() -> Iterator[Callable[..., LiveServer]]:
    servers: list[LiveServer] = []

    def start(app: Any, *, port: int = 0) -> LiveServer:
        server = LiveServer(app=app, port=port).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        if not server.stopped:
            server.stop()


@pytest.fixture
def live_server() -> Iterator[Callable[..., LiveServer]]:
    """Factory: ``live_server(app, port=0)`` starts ``app`` on a free (or the given) loopback port.

    Every server started through it is stopped at teardown.
    """
    yield from _servers()


@pytest.fixture(scope="module")
def module_live_server() -> Iterator[Callable[..., LiveServer]]:
    """:func:`live_server` whose servers live until the end of the test module."""
    yield from _servers()
