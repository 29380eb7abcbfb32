"""The Ray cluster tradecast computes on: an existing one (``address`` / ``$RAY_ADDRESS``), or by default a local
head on this machine, started once under ``$TRADECAST_HOME/ray`` and shared by every run (so concurrent runs share
its CPU/GPU slots instead of each starting its own).

The local head: ``ray start --head --block`` in its own process group, the dashboard off, usage stats off, token
authentication on (a random token in ``ray/auth_token``, mode 0600: Ray binds its ports on every interface, the
token keeps other users and hosts out). ``ray/head.json`` records its address and pid; a dead pid means a stale
file and a new head. ``stop_local_head`` ends that process group only (not ``ray stop``, which ends every Ray on
the machine)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ingest.files import atomic_write_text, locked
from storage.home import tradecast_home

MAX_TEMP_DIR = 40  # Ray's unix sockets live under <temp>/session_<stamp>/sockets/: 107 bytes in all on Linux


@dataclass(frozen=True)
class Head:
    address: str
    pid: int
    temp_dir: str
    num_cpus: int
    num_gpus: int


def ray_dir(home: str | None = None) -> Path:
    return tradecast_home(home) / "ray"


def _temp_dir(home: str | None) -> Path:
    """Ray's session files: under the home when the path is short enough for its sockets, else a short folder
    named by the home's hash in the system temp dir (said in head.json)."""
    import hashlib

    inside = ray_dir(home) / "tmp"
    if len(str(inside)) <= MAX_TEMP_DIR:
        return inside
    digest = hashlib.sha256(str(tradecast_home(home)).encode()).hexdigest()[:10]
    return Path("/tmp") / f"tradecast-ray-{digest}"


def auth_env(home: str | None = None) -> dict[str, str]:
    """Token authentication for the local head (written on first use): the env its processes and drivers need."""
    token = ray_dir(home) / "auth_token"
    if not token.exists():
        token.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # our own child that ended: reap it (a zombie answers kill 0)
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def running_head(home: str | None = None) -> Head | None:
    """The local head recorded under the home, when its process is alive."""
    path = ray_dir(home) / "head.json"
    if not path.exists():
        return None
    try:
        head = Head(**json.loads(path.read_text()))
    except (ValueError, TypeError):  # a damaged record: no head known (a new one is started)
        return None
    return head if _alive(head.pid) else None


def local_head(home: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
               timeout_s: float = 120.0) -> Head:
    """The running local head of this home, else a new one with ``num_cpus`` (default: this machine's) and
    ``num_gpus`` (default: the visible CUDA devices, counted by Ray). One process starts it; others wait."""
    folder = ray_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder / "head.json"):
        head = running_head(home)
        if head is not None:
            return head
        port, temp = _free_port(), _temp_dir(home)
        temp.mkdir(parents=True, exist_ok=True)
        ray = Path(sys.executable).with_name("ray")
        cmd = [str(ray), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
               "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
        cpus = int(num_cpus or os.cpu_count() or 1)
        cmd.append(f"--num-cpus={cpus}")
        if num_gpus is not None:
            cmd.append(f"--num-gpus={int(num_gpus)}")
        log = folder / "head.log"
        env = {**os.environ, **auth_env(home), "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    cwd=folder)
        deadline = time.monotonic() + timeout_s
        while b"Ray runtime started" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                _end(proc.pid)
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the local Ray head did not start within {timeout_s:.0f} s (log {log}):\n{tail}")
            time.sleep(0.25)
        head = Head(address=f"127.0.0.1:{port}", pid=proc.pid, temp_dir=str(temp), num_cpus=cpus,
                    num_gpus=int(num_gpus or 0))
        atomic_write_text(folder / "head.json", json.dumps(head.__dict__))
        return head


def _end(pid: int, wait_s: float = 30.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def stop_local_head(home: str | None = None) -> bool:
    """Stop this home's local head (its process group); True when one was running."""
    folder = ray_dir(home)
    with locked(folder / "head.json"):
        head = running_head(home)
        if head is not None:
            _end(head.pid)
        (folder / "head.json").unlink(missing_ok=True)
    return head is not None


def connect(address: str | None = None, home: str | None = None, *, num_cpus: int | None = None,
            num_gpus: int | None = None) -> str:
    """Connect this process to Ray (once): ``address`` (or ``$RAY_ADDRESS``) when given, else this home's local
    head (started when none runs). Returns the address connected to."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        imported = "ray" in sys.modules
        os.environ.update(auth_env(home))
        if imported:  # Ray read RAY_AUTH_MODE into its config at import: read it again (and drop a cached token)
            from ray._raylet import AuthenticationTokenLoader, Config

            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()
        address = local_head(home, num_cpus=num_cpus, num_gpus=num_gpus).address
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False, namespace="tradecast", logging_level="WARNING")
    return address
