"""`make run` keeps var/ to its owner and its Redis behind a password, for real: the dev server's
Redis, SQLite files (WAL and SHM included) and secrets after a webhook went through."""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.devserver import devserver_env, get_json
from tests.support.processes import start_in_session
from tests.support.services import free_port, missing

ROOT = Path(__file__).resolve().parents[2]


class DevServer:
    def __init__(self, var: Path, web: int, admin: int, redis_port: int, log: Path) -> None:
        self.var, self.web, self.admin, self.redis_port, self.log = var, web, admin, redis_port, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture()
def devserver(tmp_path: Path) -> Iterator[DevServer]:
    if not shutil.which("redis-server"):
        missing("redis-server")
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)  # what an older `make run` (or a umask of 022) left behind
    (var / "notes.txt").write_text("left by an older run\n")
    (var / "notes.txt").chmod(0o644)
    web, admin, redis_port = free_port(), free_port(), free_port()
    env = devserver_env(var, web=web, admin=admin, redis_port=redis_port)
    log_path = tmp_path / "run.log"
    log = open(log_path, "w")
    process = start_in_session([sys.executable, "-m", "admin.devserver", "run"], env=env, log=log)
    try:
        yield DevServer(var, web, admin, redis_port, log_path)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()


def _until(what: str, check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _modes(var: Path) -> dict[str, str]:
    return {
        str(p.relative_to(var.parent)): oct(stat.S_IMODE(p.lstat().st_mode)) for p in (var, *var.rglob("*"))
    }


def test_make_run_keeps_var_private_and_its_redis_behind_a_password(devserver: DevServer) -> None:
    var = devserver.var
    banner = _until("the banner", lambda: "Try it" in devserver.output() and devserver.output())
    webhook_url = re.search(r"curl -sS -X POST '([^']+)'", banner).group(1)  # type: ignore[union-attr]
    token = webhook_url.split("token=")[1]
    admin_token = (var / "admin-token").read_text().strip()
    body = (ROOT / "examples/shippo/transaction_created.json").read_bytes()
    request = urllib.request.Request(
        webhook_url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    _until("the receiver", lambda: urllib.request.urlopen(request, timeout=5).status == 200)
    order_url = f"http://127.0.0.1:{devserver.admin}/api/merchants/demo/orders/1001"
    _until("the worker", lambda: get_json(order_url, admin_token).get("shipments"))

    db = var / "parcelhook.db"
    for name in (
        "parcelhook.db-wal",
        "parcelhook.db-shm",
        "redis/redis.log",
        "redis-password",
        "encryption-key",
    ):
        assert (var / name).exists(), f"{name} exists while make run runs"
    assert list((var / "redis").rglob("*.aof")), "Redis keeps an append-only file"
    modes = _modes(var)
    wrong = {
        path: mode
        for path, mode in modes.items()
        if mode != ("0o700" if (var.parent / path).is_dir() else "0o600")
    }
    assert wrong == {}, modes

    password = (var / "redis-password").read_text().strip()
    anonymous = redis.Redis(port=devserver.redis_port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):  # NOAUTH: nobody else on the host can enqueue
        anonymous.rpush("parcelhook:events", b"forged")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=devserver.redis_port, password="guess", socket_timeout=5).ping()
    assert redis.Redis(port=devserver.redis_port, password=password, socket_timeout=5).ping()

    stored = b"".join(p.read_bytes() for p in var.glob("parcelhook.db*"))
    assert token.encode() not in stored and db.stat().st_size > 0
    commands = subprocess.run(
        ["ps", "-eww", "-o", "args="], capture_output=True, text=True, check=True
    ).stdout
    assert password not in commands, "the password is never on a command line"
    assert password not in devserver.output() and password not in (var / "redis" / "redis.log").read_text()
