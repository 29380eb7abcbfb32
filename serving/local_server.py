"""uvicorn for an app on 127.0.0.1 (a free port) in a thread of this process: the benchmarks' and tests' real HTTP
server, without a subprocess to start or clean up."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


class ThreadedServer:
    """``with ThreadedServer(app) as server:`` serves ``app`` on ``server.url`` until the block ends."""

    def __init__(self, app: Any, *, lifespan: str = "on", start_timeout_s: float = 30.0) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.start_timeout_s = start_timeout_s
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start within {self.start_timeout_s:g} s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
