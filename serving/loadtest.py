"""HTTP load against a running service on this machine (loopback only; bounded in time and clients)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_service(args: list[str], *, port: int, env: dict | None = None, timeout: float = 60.0) -> subprocess.Popen:
    """``tradecast serve ARGS --port PORT`` in a subprocess; returns once ``/health`` answers."""
    import httpx

    cmd = [sys.executable, "-m", "pipelines.cli", "serve", *args, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tradecast serve exited: {proc.stdout.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"tradecast serve did not answer within {timeout:.0f} s")


def stop_service(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


async def _client(port: int, make_request: Any, stop_at: float, interval: float, out: list, errors: list,
                  seed: int) -> None:
    """One keep-alive HTTP/1.1 connection sending ``make_request(rng) -> (method, path, json body or None)``.
    Plain asyncio streams: httpx's async client costs ~5 ms of client CPU per request here and would measure
    itself, not the service."""
    rng = np.random.default_rng(seed)
    await asyncio.sleep(float(rng.uniform(0, interval or 0.01)))  # spread the clients' phases
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            method, path, body = make_request(rng)
            payload = json.dumps(body).encode() if body is not None else b""
            head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n").encode()
            started = time.perf_counter()
            writer.write(head + payload)
            await writer.drain()
            status_line, *headers = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
            length = next(int(h.split(b":")[1]) for h in headers if h.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            status = int(status_line.split()[1])
            (out if status == 200 else errors).append(time.perf_counter() - started if status == 200 else status)
            if interval:
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
    except (OSError, asyncio.IncompleteReadError, StopIteration) as exc:
        errors.append(type(exc).__name__)
    finally:
        writer.close()


def load(port: int, make_request: Any, *, clients: int = 50, duration: float = 20.0,
         interval: float = 0.0) -> dict[str, Any]:
    """``clients`` concurrent connections to 127.0.0.1:``port`` for ``duration`` seconds; each sends a request,
    waits for the answer, then (``interval`` > 0) waits until ``interval`` has passed since it sent.
    Latency is measured by the client, in ms."""

    async def main() -> tuple[list, list, float]:
        out: list[float] = []
        errors: list = []
        started = time.perf_counter()
        await asyncio.gather(*(_client(port, make_request, started + duration, interval, out, errors, i)
                               for i in range(clients)))
        return out, errors, time.perf_counter() - started

    latencies, errors, elapsed = asyncio.run(main())
    arr = np.asarray(latencies) * 1e3 if latencies else np.asarray([np.nan])
    return {"clients": clients, "duration_s": round(elapsed, 2), "interval_s": interval, "requests": len(latencies),
            "errors": len(errors), "error_kinds": sorted({str(e) for e in errors})[:5],
            "throughput_rps": round(len(latencies) / elapsed, 1), "p50_ms": float(np.median(arr)),
            "p99_ms": float(np.percentile(arr, 99)), "max_ms": float(arr.max())}
