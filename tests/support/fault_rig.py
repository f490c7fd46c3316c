"""The fault rig: the Procfile's processes for real, on their own Redis, PostgreSQL (or SQLite), SMTP
server and Twilio-compatible server, so that any of them can be killed, stopped or broken mid-stream.

Everything is on loopback; every process is started in its own session and stopped by PID (its
process group); every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.services import (
    RedisServer,
    free_port,
    missing,
    pg_bin,
    postgres_user_prefix,
    spawn_redis,
    wait_for_port,
    wait_until_loaded,
)
from tests.support.smtp_server import SmtpServer
from tests.support.twilio_server import TwilioServer

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "fault-admin-token-" + "a" * 16
SIGNING_KEY = "fault-signing-key-" + "b" * 16
TWILIO_SID = "AC" + "f" * 32
TWILIO_TOKEN = "fault-twilio-token"


def procfile() -> dict[str, str]:
    """The Procfile's commands by process name: the rig runs exactly what production runs."""
    commands = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not line.startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


# --------------------------------------------------------------------------- services that can fail


class PgCluster:
    """A private PostgreSQL cluster that can be stopped and started again on the same port and data."""

    def __init__(self) -> None:
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        if not initdb or not pg_ctl:
            missing("PostgreSQL (initdb/pg_ctl)")
        assert initdb and pg_ctl
        self.pg_ctl = pg_ctl
        self.base = Path(tempfile.mkdtemp(prefix="ph-fault-pg-"))
        self.data, sock = self.base / "data", self.base / "sock"
        sock.mkdir()
        self.prefix = postgres_user_prefix(self.base, sock)
        self.port = free_port()
        self.opts = (
            f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300"
        )
        subprocess.run(
            [*self.prefix, initdb, "-D", str(self.data), "-U", "parcelhook", "--auth=trust", "-E", "UTF8"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://parcelhook@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        subprocess.run(
            [
                *self.prefix,
                self.pg_ctl,
                "-D",
                str(self.data),
                "-o",
                self.opts,
                "-l",
                str(self.base / "pg.log"),
                "-w",
                "-t",
                "60",
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def destroy(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class FlakyTwilio(TwilioServer):
    """The Twilio-compatible server, plus numbers that hang longer than the client's timeout."""

    hanging: set[str] = field(default_factory=set)
    invalid: set[str] = field(default_factory=set)
    hang_s: float = 20.0  # past the Twilio client's 15 s timeout

    def _handle(self, h: Any) -> None:
        length = h.headers.get("Content-Length")
        if (self.hanging or self.invalid) and length:
            from urllib.parse import parse_qs

            raw = h.rfile.read(int(length))
            to = parse_qs(raw.decode()).get("To", [""])[-1]
            h.rfile = _Replay(raw, h.rfile)
            if to in self.hanging:
                time.sleep(self.hang_s)
                return  # the client gave up long ago; nothing is answered, nothing recorded
            if to in self.invalid:
                self._error(h, 400, 21211, None, to)
                return
        super()._handle(h)


class RestartableSmtp(SmtpServer):
    """The SMTP server, which can go down and come back on the same port (connections refused meanwhile)."""

    def restart(self) -> None:
        from unittest import mock

        from tests.support import smtp_server

        with mock.patch.object(smtp_server, "_free_port", return_value=self.port):  # same port as before
            self.start()


class _Replay:
    def __init__(self, head: bytes, rest: Any) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            out, self.head = self.head[:n] if n >= 0 else self.head, self.head[n:] if n >= 0 else b""
            return out
        return bytes(self.rest.read(n))


# --------------------------------------------------------------------------- the rig


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    address: str = "127.0.0.1"  # where it serves: one host of several (tests/support/hosts.py)


class Rig:
    """web + admin + worker + scheduler from the Procfile, on services this rig owns."""

    def __init__(
        self, workdir: Path, *, database: str = "postgres", worker_processes: int = 2, worker_threads: int = 4
    ) -> None:
        from cryptography.fernet import Fernet

        self.workdir = workdir
        self.redis_dir = workdir / "redis"
        self.redis_dir.mkdir()
        port = free_port()
        self.redis = RedisServer(port, spawn_redis(port, self.redis_dir), self.redis_dir)
        wait_for_port(port)
        self.pg: PgCluster | None = None
        if database == "postgres":
            self.pg = PgCluster()
            self.database_url = self.pg.url
        else:
            self.database_url = f"sqlite:///{workdir / 'parcelhook.db'}"
        self.smtp = RestartableSmtp()
        self.smtp.start()
        self.twilio = FlakyTwilio(TWILIO_SID, TWILIO_TOKEN).start()
        self.web_port, self.admin_port = free_port(), free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PARCELHOOK_")},
            "PARCELHOOK_DATABASE_URL": self.database_url,
            "PARCELHOOK_BROKER_URL": self.redis.url,
            "PARCELHOOK_ADMIN_TOKEN": ADMIN_TOKEN,
            "PARCELHOOK_SIGNING_KEY": SIGNING_KEY,
            "PARCELHOOK_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "PARCELHOOK_PUBLIC_URL": f"http://127.0.0.1:{self.web_port}",
            "PARCELHOOK_WEB_PORT": str(self.web_port),
            "PARCELHOOK_ADMIN_PORT": str(self.admin_port),
            "PARCELHOOK_VAR_DIR": str(workdir),
            "PARCELHOOK_SMTP_URL": self.smtp.url,
            "PARCELHOOK_TWILIO_ACCOUNT_SID": TWILIO_SID,
            "PARCELHOOK_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "PARCELHOOK_TWILIO_API_URL": self.twilio.url,
            "WEB_CONCURRENCY": "2",
            "WORKER_PROCESSES": str(worker_processes),
            "WORKER_THREADS": str(worker_threads),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),  # this checkout, whatever the venv was installed from
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
        }
        self.commands = procfile()
        self.procs: dict[str, list[Proc]] = {}
        self.restarts: dict[str, int] = {}
        self._on_purpose: set[int] = set()  # pids stopped by the test itself: not restarted
        self._closing = threading.Event()
        self._migrate()

    # -- processes --------------------------------------------------------------------------------
    def _migrate(self) -> None:
        subprocess.run(
            ["parcelhook", "migrate"],
            cwd=ROOT,
            env=self.env,
            check=True,
            timeout=120,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self, name: str, *, address: str = "127.0.0.1", env: dict[str, str] | None = None) -> Proc:
        """Start one Procfile process in its own session (process group). ``address``: the loopback
        address it binds instead of the Procfile's 127.0.0.1 (another host); ``env``: overrides."""
        index = len(self.procs.get(name, []))
        log = self.workdir / f"{name}-{index}.log"
        command = self.commands[name]
        if address != "127.0.0.1":
            command = command.replace("--bind 127.0.0.1:", f"--bind {address}:")
        popen = subprocess.Popen(
            ["bash", "-c", "exec " + command],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = Proc(name, popen, log, address)
        self.procs.setdefault(name, []).append(proc)
        if name == "web":
            port = (env or {}).get("PARCELHOOK_WEB_PORT", str(self.web_port))
            self._wait_http(f"http://{address}:{port}/healthz", proc)
        elif name == "admin":
            self._wait_http(f"http://127.0.0.1:{self.admin_port}/api/merchants", proc, auth=True)
        return proc

    def start_all(self) -> None:
        for name in ("web", "admin", "worker", "scheduler"):
            self.start(name)
        self.wait_for_workers()

    def supervise(self, name: str) -> None:
        """Restart ``name`` whenever it exits on its own, as systemd's Restart=always would."""
        handled: set[int] = set()

        def loop() -> None:
            while not self._closing.wait(0.3):
                for proc in list(self.procs.get(name, [])):
                    pid = proc.popen.pid
                    if pid in handled or pid in self._on_purpose or proc.popen.poll() is None:
                        continue
                    handled.add(pid)
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    try:
                        self.start(name)
                    except Exception:
                        handled.discard(pid)

        threading.Thread(target=loop, name=f"supervise-{name}", daemon=True).start()

    def live(self, name: str) -> list[Proc]:
        return [p for p in self.procs.get(name, []) if p.popen.poll() is None]

    def kill9(self, proc: Proc) -> None:
        """SIGKILL to the whole process group: the dramatiq master and its worker processes alike."""
        try:
            os.killpg(proc.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.popen.wait(10)

    def kill9_child(self, proc: Proc) -> int:
        """SIGKILL one worker *process* (a child of the dramatiq master), as the OOM killer would."""
        children: list[int] = wait(lambda: _children(proc.popen.pid), 30, f"{proc.name}'s worker processes")
        os.kill(children[0], signal.SIGKILL)
        return children[0]

    def terminate(self, proc: Proc, timeout: float = 60) -> None:
        """A graceful stop (SIGTERM to the group), as a deploy does."""
        self._on_purpose.add(proc.popen.pid)
        try:
            os.killpg(proc.popen.pid, signal.SIGTERM)
            proc.popen.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.kill9(proc)

    def wait_for_workers(self, timeout: float = 60) -> None:
        """Until a worker has reported its heartbeat (it consumes from then on)."""
        wait(lambda: self.admin_get("/api/ops/queues")["workers"], timeout, "a live worker")

    def stop_all(self) -> None:
        for procs in self.procs.values():
            for proc in procs:
                if proc.popen.poll() is None:
                    self.terminate(proc, timeout=15)

    def destroy(self) -> None:
        self._closing.set()
        self.stop_all()
        self.smtp.stop()
        self.twilio.stop()
        if self.redis.process.poll() is None:
            self.redis.process.kill()
            self.redis.process.wait(10)
        if self.pg is not None:
            self.pg.destroy()

    # -- Redis faults -----------------------------------------------------------------------------
    def kill9_redis(self) -> None:
        self.redis.process.kill()
        self.redis.process.wait(10)

    def restart_redis(self) -> None:
        self.redis.process = spawn_redis(self.redis.port, self.redis_dir)
        wait_for_port(self.redis.port)
        wait_until_loaded(self.redis.port)

    # -- HTTP -------------------------------------------------------------------------------------
    def _wait_http(self, url: str, proc: Proc, auth: bool = False, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited: {proc.log.read_text()[-3000:]}")
            try:
                request = urllib.request.Request(url, headers=self._auth() if auth else {})
                with urllib.request.urlopen(request, timeout=2):
                    return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise RuntimeError(f"{proc.name} did not answer {url} in {timeout}s")

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def admin_call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.admin_port}{path}",
            data=data,
            method=method,
            headers={**self._auth(), "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def admin_get(self, path: str) -> dict[str, Any]:
        return self.admin_call("GET", path)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def wait(check: Callable[..., Any], timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error!r})")
