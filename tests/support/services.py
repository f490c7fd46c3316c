"""Real services for tests: a private redis-server and an unprivileged PostgreSQL.

A missing binary skips the tests that need it on a laptop; under CI=true it is a
failure, never a skip (docs/architecture.md, Tests).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI=true (make test installs it)")
    pytest.skip(f"{what} not installed")


def required(what: str, *found: str | None) -> list[str]:
    """``found`` (paths of the binaries a service needs) when every one is there; otherwise
    :func:`missing` ``what``."""
    present = [path for path in found if path]
    if len(present) != len(found):
        missing(what)
    return present


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen[Any] | None = None) -> None:
    """Until something listens on the loopback ``port`` (or ``process`` exits: that fails at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process {process.args!r} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def start(self) -> None:
        """(Re)start on the same port and data dir (AOF on, so nothing queued is lost)."""
        self.process = spawn_redis(self.port, self.workdir)
        wait_for_port(self.port)
        wait_until_loaded(self.port)


def wait_until_loaded(port: int, timeout: float = 30.0) -> None:
    """After a restart Redis answers LOADING until the append-only file is replayed."""
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return
            except (redis.exceptions.BusyLoadingError, redis.exceptions.ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


def spawn_redis(port: int, workdir: Path, *, new_session: bool = False) -> subprocess.Popen[bytes]:
    """A private redis-server like `make run`'s (AOF everysec, no RDB saves) on ``port``, its
    files in ``workdir``; ``new_session``: in a process group of its own."""
    return subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "no",
            "--logfile",
            str(workdir / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=new_session,
    )


@contextmanager
def redis_server(port: int | None = None) -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        missing("redis-server")
    workdir = Path(tempfile.mkdtemp(prefix="ph-redis-"))
    port = port or free_port()
    server = RedisServer(port, spawn_redis(port, workdir), workdir)
    try:
        wait_for_port(port)
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server binary (``initdb``, ``pg_ctl``): on PATH, or Debian's newest version."""
    found = shutil.which(name)
    if found and "postgresql" in os.path.realpath(found):
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else found


def postgres_user_prefix(*owned: Path) -> list[str]:
    """PostgreSQL refuses to run as root: then its commands run as the ``postgres`` user (created
    when missing), which is given the directories ``owned``. The prefix for those commands."""
    if os.geteuid() != 0:
        return []
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        pw = pwd.getpwnam("postgres")
    for path in owned:
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a throwaway cluster; yields a SQLAlchemy URL. Runs as 'postgres' when we are root."""
    initdb, pg_ctl = required("PostgreSQL (initdb/pg_ctl)", pg_bin("initdb"), pg_bin("pg_ctl"))
    base = Path(tempfile.mkdtemp(prefix="ph-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    prefix = postgres_user_prefix(base, sock)
    port = free_port()
    run: dict[str, Any] = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "parcelhook", "--auth=trust", "-E", "UTF8"], **run
    )
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "pg.log"), "-w", "start"], **run
    )
    try:
        yield f"postgresql+psycopg://parcelhook@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        shutil.rmtree(base, ignore_errors=True)
