"""Shared bench plumbing: private services, process handling, statistics, result files.

Everything here binds to 127.0.0.1 on a free port and lives in a temp dir; nothing touches
``var/`` or the ``make run`` Redis port (6390).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from config import PROJECT_ROOT as PROJECT_ROOT  # re-exported: the benches use common.PROJECT_ROOT
from tests.support.processes import start_in_session
from tests.support.services import pg_bin, postgres_user_prefix, spawn_redis
from tests.support.services import wait_for_port as wait_for_port  # re-exported for bench/ingest.py

if TYPE_CHECKING:
    from store.database import Database
    from store.merchants import Merchant

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "shippo"
VENV_BIN = Path(sys.executable).parent
RESERVED_PORTS = {6390, 8000, 8001}  # make run's Redis and receiver/admin: never ours

NAMESPACE = "parcelhook"  # Settings.broker_namespace default: the queue keys the web app writes
EVENTS_KEY = f"{NAMESPACE}:events"  # dramatiq RedisBroker: list of message ids per queue
NOOP_QUEUE = "bench_noop"  # the pipeline floor's queue (bench/noop_worker.py)


class BenchError(RuntimeError):
    """A benchmark could not run or its correctness check failed."""


# ------------------------------------------------------------------ ports and processes


def free_port() -> int:
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in RESERVED_PORTS:
            return port
    raise BenchError("no free loopback port")


def stop_process(process: subprocess.Popen[Any] | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group we started (start_new_session=True), then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(5)


def spawn(argv: Sequence[str], *, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A child in its own session (so stop_process can end its whole group), output to ``log``."""
    with log.open("ab") as handle:
        return start_in_session(argv, env=env, log=handle)


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCELHOOK_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    env.update(extra)
    return env


def app_env(workdir: Path, db_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """:func:`child_env` for a parcelhook process (web or worker): its database and broker, a fresh
    admin token and signing key, its ``var/`` in ``workdir``."""
    return child_env(
        PARCELHOOK_DATABASE_URL=db_url,
        PARCELHOOK_BROKER_URL=broker_url,
        PARCELHOOK_ADMIN_TOKEN=secrets.token_urlsafe(16),
        PARCELHOOK_SIGNING_KEY=secrets.token_urlsafe(16),
        PARCELHOOK_VAR_DIR=str(workdir / "var"),
        **extra,
    )


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------ private services


@dataclass
class Redis:
    port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)


@contextmanager
def redis_server(workdir: Path) -> Iterator[Redis]:
    """A private redis-server like `make run`'s (AOF everysec), on a free port, in ``workdir``."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server is not installed (make bench installs it)")
    data = workdir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = spawn_redis(port, data, new_session=True)
    try:
        wait_for_port(port, process=process)
        yield Redis(port, workdir)
    finally:
        stop_process(process)


def postgres_available() -> bool:
    return bool(pg_bin("initdb") and pg_bin("pg_ctl"))


@contextmanager
def postgres_server(workdir: Path) -> Iterator[str]:
    """A throwaway cluster (as in tests/support/services.py); yields a SQLAlchemy URL.

    fsync stays on; ``synchronous_commit=off`` gives PostgreSQL the same durability class as
    SQLite's WAL + ``synchronous=NORMAL`` (a power loss may drop the last commits, never corrupts).
    """
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise BenchError("PostgreSQL (initdb/pg_ctl) is not installed")
    base = workdir / "pg"
    data, sock = base / "data", base / "sock"
    sock.mkdir(parents=True)
    prefix = postgres_user_prefix(workdir, base, sock)
    port = free_port()
    quiet: dict[str, Any] = {"check": True, "stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
    subprocess.run(
        [*prefix, initdb, "-D", str(data), "-U", "parcelhook", "--auth=trust", "-E", "UTF8"], **quiet
    )
    opts = (
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=100 "
        "-c synchronous_commit=off -c shared_buffers=128MB"
    )
    started = False
    try:
        subprocess.run(
            [*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "pg.log"), "-w", "start"], **quiet
        )
        started = True
        yield f"postgresql+psycopg://parcelhook@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run(
                [*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
            )


@contextmanager
def temp_dir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ database set-up


def sqlite_url(workdir: Path, name: str = "bench.db") -> str:
    return f"sqlite:///{workdir / name}"


def migrate(url: str) -> None:
    """Alembic upgrade, with alembic's INFO chatter kept out of the results table."""
    import logging

    from store.migrate import upgrade

    upgrade(url)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def customer(ref: str, **extra: str) -> dict[str, str]:
    """The registered customer of bench order ``ref`` (English, an email address of its own)."""
    return {"name": f"Customer {ref}", "email": f"c{ref}@bench.example", "locale": "en", **extra}


def seed_merchant(
    db: Database,
    slug: str,
    *,
    name: str,
    profile: dict[str, Any],
    orders: Iterable[str] = (),
    customer_of: Callable[[str], dict[str, str]] = customer,
    hmac_secrets: list[str] | None = None,
    encryption_key: str | None = None,
) -> Merchant:
    """Merchant ``slug`` (its vault keyed by ``encryption_key``, a fresh key if None) and its
    ``orders`` registered for email only, in one transaction."""
    from store import merchants as merchant_store
    from store import orders as order_store
    from store.vault import Vault, generate_key

    with db.write() as conn:
        merchant, _ = merchant_store.upsert(
            conn,
            slug,
            vault=Vault([encryption_key or generate_key()]),
            name=name,
            hmac_secrets=hmac_secrets,
            profile=profile,
        )
        for ref in orders:
            order_store.register(
                db, conn, merchant.id, ref, customer=customer_of(ref), notify_email=True, notify_sms=False
            )
    return merchant


# ------------------------------------------------------------------ realistic bodies


def fixture(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return body


def _hex(tag: str, i: int, salt: str) -> str:
    return f"{salt}{tag}{i:012x}".ljust(32, "0")[:32]


def label_body(template: dict[str, Any], i: int, salt: str, order_ref: str | None) -> dict[str, Any]:
    """transaction_created for shipment ``i``: unique transaction id + tracking number."""
    body = copy.deepcopy(template)
    data = body["data"]
    data["object_id"] = _hex("t", i, salt)
    data["tracking_number"] = tracking_number(i, salt)
    data["metadata"] = order_ref
    data["tracking_url_provider"] = (
        f"https://tools.usps.com/go/TrackConfirmAction_input?origTrackNum={data['tracking_number']}"
    )
    return body


def tracking_number(i: int, salt: str) -> str:
    return f"92{salt}{i:014d}"


def track_body(template: dict[str, Any], i: int, salt: str) -> dict[str, Any]:
    """track_updated for shipment ``i``: same tracking number/transaction as its label, and scan ids
    unique to the shipment (the same fixture scan maps to the same id in every step's history)."""
    body = copy.deepcopy(template)
    data = body["data"]
    data["tracking_number"] = tracking_number(i, salt)
    data["transaction"] = _hex("t", i, salt)
    scans = [data["tracking_status"], *(data.get("tracking_history") or ())]
    for scan in scans:
        scan["object_id"] = scan_id(scan["object_id"], i, salt)
    return body


def scan_id(original: str, i: int, salt: str) -> str:
    return hashlib.sha1(f"{salt}:{i}:{original}".encode(), usedforsecurity=False).hexdigest()[:32]


def dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def event_id_for(body_text: str) -> str:
    from domain.payload import parse_webhook, webhook_identity

    return webhook_identity(parse_webhook(body_text.encode()))


# ------------------------------------------------------------------ statistics and results


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no data."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


_SPREAD: dict[str, Callable[[Sequence[float]], float]] = {
    "max": max,
    "mean": lambda values: sum(values) / len(values),
}


def summary_ms(values: Sequence[float], spread: Literal["max", "mean"]) -> dict[str, float]:
    """p50, p99 and ``spread`` of ``values`` (seconds) in milliseconds (NaN for no data), and n."""
    return {
        "p50": ms(percentile(values, 50)),
        "p99": ms(percentile(values, 99)),
        spread: ms(_SPREAD[spread](values)) if values else float("nan"),
        "n": len(values),
    }


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    except (OSError, AttributeError):
        pass
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=5).stdout
        info["redis_server"] = out.split()[2] if out else None
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return info


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "benchmark": name,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        **result,
    }
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
    return path


def say(message: str) -> None:
    print(f"  · {message}", flush=True)


# ------------------------------------------------------------------ pipeline events (pipeline, statements)

PHASES = (
    ("label", "transaction_created.json"),
    ("transit", "track_updated_transit.json"),
    ("ofd", "track_updated_out_for_delivery.json"),
)


class Events:
    """Unique, realistic bodies for order ``i`` (a distinct salt per run keeps ids disjoint)."""

    def __init__(self, salt: str) -> None:
        self.salt = salt
        self.templates = {phase: fixture(name) for phase, name in PHASES}

    def ref(self, i: int) -> str:
        return f"{self.salt}{i}"

    def body(self, phase: str, i: int) -> str:
        if phase == "label":
            return dumps(label_body(self.templates["label"], i, self.salt, f"Order {self.ref(i)}"))
        return dumps(track_body(self.templates[phase], i, self.salt))
