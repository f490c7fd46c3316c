"""Real `dramatiq workers.main` processes, a Redis that can be killed, and a Twilio that can
hang or fail -- for the recovery tests (work held by a dead worker, retries stranded by a
Redis restart).

    with worker_process(env) as worker:        # the Procfile's command, its own process group
        ...
        worker.kill9()                         # SIGKILL to the dramatiq parent and its children
    kill9_and_restart(redis_server)            # SIGKILL, then restart from the AOF
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import redis

from config import PROJECT_ROOT
from tests.support.notify_harness import ACCOUNT_SID, AUTH_TOKEN
from tests.support.services import RedisServer, redis_server
from tests.support.twilio_server import TwilioServer
from workers.redis_replies import members

DRAMATIQ = str(Path(sys.executable).with_name("dramatiq"))


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    def kill9(self) -> None:
        """SIGKILL the whole process group (the dramatiq parent and its forked workers): no
        shutdown code runs, nothing is requeued or acked, like a host losing the process."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def worker_env(
    *, broker_url: str, database_url: str, var_dir: Path, signing_key: str, **settings: str
) -> dict[str, str]:
    """The environment of a worker process: only PARCELHOOK_* variables we set (plus PATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCELHOOK_")}
    env.update(
        {
            "PARCELHOOK_BROKER_URL": broker_url,
            "PARCELHOOK_DATABASE_URL": database_url,
            "PARCELHOOK_VAR_DIR": str(var_dir),
            "PARCELHOOK_SIGNING_KEY": signing_key,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({f"PARCELHOOK_{k.upper()}": v for k, v in settings.items()})
    return env


def twilio_settings(twilio: TwilioServer) -> dict[str, str]:
    """The ``worker_env`` settings of a worker that texts through ``twilio``."""
    return {
        "twilio_account_sid": twilio.account_sid,
        "twilio_auth_token": twilio.auth_token,
        "twilio_api_url": twilio.url,
    }


def sms_orders(system: Any, phones: Mapping[str, str]) -> None:
    """Merchant ``acme``, notifying ``shipped`` by SMS only, and one order per ref texting its phone."""
    from tests.support.notify_harness import merchant_profile, register_order

    system.create_merchant(**merchant_profile(notify={"email": [], "sms": ["shipped"]}))
    for ref, phone in phones.items():
        register_order(system, ref, phone=phone, sms=True, email_on=False)


def live_worker_ids(url: str, namespace: str = "parcelhook", within_ms: int = 5_000) -> list[str]:
    client = redis.Redis.from_url(url)
    try:
        now_ms = int(time.time() * 1000)
        return members(client.zrangebyscore(f"{namespace}:__workers__", now_ms - within_ms, "+inf"))
    except redis.RedisError:
        return []
    finally:
        client.close()


@contextmanager
def worker_process(
    env: Mapping[str, str], log: Path, *, threads: int = 2, ready_timeout: float = 60.0
) -> Iterator[WorkerProcess]:
    """`dramatiq workers.main` with one process; returns once it beats in ``__workers__``."""
    # the heartbeats are in the state Redis (on RabbitMQ: PARCELHOOK_REDIS_URL)
    state_url = env.get("PARCELHOOK_REDIS_URL") or env["PARCELHOOK_BROKER_URL"]
    before = set(live_worker_ids(state_url))
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [DRAMATIQ, "workers.main", "--processes", "1", "--threads", str(threads)],
            cwd=PROJECT_ROOT,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(process, log)
    try:
        deadline = time.monotonic() + ready_timeout
        while not set(live_worker_ids(state_url)) - before:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{worker.output()[-4000:]}")
            time.sleep(0.1)
        yield worker
    finally:
        worker.stop()


def kill9_and_restart(server: RedisServer) -> None:
    """SIGKILL the redis-server (no shutdown save), then start it again on its data dir: it
    replays its append-only file (``appendfsync everysec``)."""
    server.process.kill()
    server.process.wait(10)
    server.start()


class ScriptedTwilio(TwilioServer):
    """The test Twilio server, plus two scripts: *hang* the next N message requests (the
    connection stays open, nothing is answered, nothing is recorded as sent), and *fail*
    every request with a 500 until :meth:`heal`."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._hang = 0
        self.hung: list[str] = []
        self.failed = 0
        self._failing = False
        self._release = threading.Event()
        self._hung_answer_500 = False
        self._slow: tuple[int, float] = (0, 0.0)
        self.slowed = 0

    def slow_next(self, n: int, seconds: float) -> None:
        """Answer the next ``n`` message requests normally, but only after ``seconds``."""
        with self._lock:
            self._slow = (n, seconds)

    def hang_next(self, n: int = 1) -> None:
        with self._lock:
            self._hang += n

    def fail_all(self) -> None:
        with self._lock:
            self._failing = True

    def heal(self) -> None:
        with self._lock:
            self._failing = False
        self._release.set()

    def fail_hung(self) -> None:
        """Answer every hung request with a 500 now (a retryable failure, not a lost answer)."""
        with self._lock:
            self._hung_answer_500 = True
        self._release.set()

    def stop(self) -> None:
        self._release.set()
        super().stop()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            hang, failing = self._hang > 0, self._failing
            if hang:
                self._hang -= 1
            slow_left, pause = self._slow
            if slow_left and not hang:
                self._slow = (slow_left - 1, pause)
                self.slowed += 1
        if slow_left and not hang:
            time.sleep(pause)
        if not (hang or failing):
            super()._handle(h)
            return
        length = int(h.headers.get("Content-Length") or 0)
        form = h.rfile.read(length).decode() if length else ""
        if hang:
            with self._lock:
                self.hung.append(form)
            self._release.wait(120)
            with self._lock:
                answer_500 = self._hung_answer_500
                self.failed += answer_500
            if answer_500:
                self._error(h, 500, 20500, None)
                return
            h.close_connection = True
            return
        with self._lock:
            self.failed += 1
        self._error(h, 500, 20500, None)


def recipients(twilio: TwilioServer) -> list[Any]:
    with twilio._lock:
        return [m["to"] for m in twilio.messages]


def label_created(ref: str) -> bytes:
    """A Shippo ``transaction_created`` body for order ``ref`` (its own label and tracking)."""
    import json

    from tests.fixtures.shippo import body

    data = body("transaction_created.json")
    digits = "".join(c for c in ref if c.isdigit()).rjust(6, "0")
    data["data"].update(
        object_id=f"obj{digits}".ljust(32, "0"),
        metadata=f"Order {ref}",
        tracking_number=f"92055901649173127{digits}",
    )
    return json.dumps(data).encode()


def enqueue_webhook(url: str, merchant_slug: str, raw: bytes, namespace: str = "parcelhook") -> None:
    """What the receiver does after verifying a webhook: a ``process_event`` message on the
    broker at ``url`` (a broker of its own: the test process's global broker is elsewhere)."""
    from datetime import UTC, datetime

    from dramatiq.brokers.redis import RedisBroker

    from domain.payload import parse_webhook, webhook_identity
    from workers.actors import process_event

    broker = RedisBroker(url=url, namespace=namespace)
    try:
        broker.enqueue(
            process_event.message(
                merchant_slug,
                webhook_identity(parse_webhook(raw)),
                datetime.now(UTC).isoformat(),
                raw.decode(),
            )
        )
    finally:
        broker.client.close()


def system_for_workers(make_system: Any, make_settings: Any, database_url: str) -> Any:
    """An integration ``System`` whose settings a worker process can share. Adds merchant
    secret encryption keys when this version of ``Settings`` has them and the fixtures
    don't set them yet."""
    from config import Settings

    extra: dict[str, Any] = {}
    if "encryption_keys" in getattr(Settings, "__dataclass_fields__", {}) and not getattr(
        make_settings(database_url), "encryption_keys", ()
    ):
        from cryptography.fernet import Fernet

        extra["encryption_keys"] = (Fernet.generate_key().decode(),)
    return make_system(database_url, **extra)


def settings_env(settings: Any) -> dict[str, str]:
    """The PARCELHOOK_* variables a worker needs to share ``settings``' secrets."""
    keys = getattr(settings, "encryption_keys", ())
    return {"encryption_keys": ",".join(keys)} if keys else {}


def env_for_workers(
    system: Any, *, broker_url: str, var_dir: Path, twilio: TwilioServer | None = None
) -> dict[str, str]:
    """The environment of worker processes that share ``system``'s database, signing key and
    secrets, on the broker at ``broker_url``; texting through ``twilio`` when given."""
    return worker_env(
        broker_url=broker_url,
        database_url=system.settings.database_url,
        var_dir=var_dir,
        signing_key=system.settings.signing_key,
        **(twilio_settings(twilio) if twilio is not None else {}),
        **settings_env(system.settings),
    )


@dataclass(frozen=True)
class SmsWorkers:
    """Merchant ``acme`` texting ``shipped`` to one phone per order (``phones``: ref → phone),
    and what worker processes need to send those texts through ``twilio`` off ``redis``."""

    system: Any
    redis: RedisServer
    twilio: ScriptedTwilio
    var_dir: Path
    phones: Mapping[str, str]
    env: dict[str, str]

    def worker(self, log_name: str, *, threads: int = 2) -> AbstractContextManager[WorkerProcess]:
        """A worker process logging to ``var_dir / log_name`` (see :func:`worker_process`)."""
        return worker_process(self.env, self.var_dir / log_name, threads=threads)

    def post_labels(self) -> None:
        """A ``label_created`` webhook for every order, straight onto the broker."""
        for ref in self.phones:
            enqueue_webhook(self.redis.url, "acme", label_created(ref))

    def sms(self) -> list[Any]:
        """The SMS notification rows, oldest first."""
        from tests.support.notify_harness import rows

        return [r for r in rows(self.system) if r.channel == "sms"]

    def wait_all_sent(self, *, within_s: float, after: str) -> None:
        """Waits until every SMS is ``sent``, at most ``within_s`` from now (the moment
        ``after`` names), and prints how long it took."""
        from tests.support.polling import wait_until

        since = time.monotonic()
        wait_until(
            lambda: all(r.status == "sent" for r in self.sms()),
            timeout=within_s,
            what=f"every SMS sent within {within_s:.0f} s after {after}",
        )
        print(f"\nall {len(self.phones)} retries sent {time.monotonic() - since:.1f} s after {after}")


#: The ``sms_workers`` fixture: phones (ref → phone) in, :class:`SmsWorkers` out.
MakeSmsWorkers = Callable[[Mapping[str, str]], SmsWorkers]


@pytest.fixture()
def sms_workers(
    worker_system: Any, broker_redis: RedisServer, twilio: ScriptedTwilio, tmp_path: Path
) -> MakeSmsWorkers:
    """Makes the :class:`SmsWorkers` of ``worker_system``, ``broker_redis`` and ``twilio``."""

    def make(phones: Mapping[str, str]) -> SmsWorkers:
        sms_orders(worker_system, phones)
        env = env_for_workers(worker_system, broker_url=broker_redis.url, var_dir=tmp_path, twilio=twilio)
        return SmsWorkers(worker_system, broker_redis, twilio, tmp_path, phones, env)

    return make


@pytest.fixture()
def broker_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own for worker processes (one it may kill and restart), every write
    fsynced: a kill -9 loses nothing, so a test is about what the workers do afterwards."""
    with redis_server() as server:
        client = redis.Redis.from_url(server.url)
        client.config_set("appendfsync", "always")
        client.close()
        yield server


@pytest.fixture()
def twilio() -> Iterator[ScriptedTwilio]:
    """A scripted Twilio-compatible server with the harness's account."""
    with ScriptedTwilio(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server
