"""``make run`` / ``make demo``: the whole system on embedded defaults, in the foreground.

A private Redis under ``var/redis`` (AOF on, own port, a generated password), SQLite under
``var/``, the admin token, signing key and encryption key in ``var/``, a demo merchant, and
the Procfile's four processes under honcho. Ctrl-C stops every child, then Redis.

``var/`` is its owner's only: the directory and every directory under it 0700, every file
0600 — the database and its WAL/SHM files, Redis's append-only files and log, the secrets.
The dev server runs with umask 077, which Redis, SQLite, honcho, gunicorn and dramatiq
inherit, and tightens what an older ``make run`` left behind at start.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from config import PROJECT_ROOT, Settings, SettingsError

VAR = Path(os.environ.get("PARCELHOOK_VAR_DIR") or PROJECT_ROOT / "var")
REDIS_PORT = int(os.environ.get("PARCELHOOK_REDIS_PORT", "6390"))
DEMO_MERCHANT = "demo"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


PRIVATE = 0o077  # umask: files 0600, directories 0700


def secure_var_dir(var: Path | None = None) -> Path:
    """Create var/ as 0700 and tighten everything an older run left in it (0700 dirs, 0600 files)."""
    var = var or VAR
    var.mkdir(mode=0o700, parents=True, exist_ok=True)
    for path in (var, *var.rglob("*")):
        if not path.is_symlink():
            path.chmod(0o700 if path.is_dir() else 0o600)
    return var


def _private_file(path: Path, text: str = "") -> None:
    """Write a file readable by its owner only from the first byte (whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def private_redis_url(url: str | None, password: str) -> str:
    """``redis://:<password>@127.0.0.1:<port>/0``: the private Redis, authenticated. A URL the user
    set for it (host 127.0.0.1/localhost, our port, no password) gets the password; any other
    URL (another Redis, RabbitMQ) is theirs and left alone."""
    secret = quote(password, safe="")
    if not url:
        return f"redis://:{secret}@127.0.0.1:{REDIS_PORT}/0"
    parts = urlsplit(url)
    ours = (
        parts.scheme == "redis" and parts.hostname in ("127.0.0.1", "localhost") and parts.port == REDIS_PORT
    )
    if not ours or parts.password:
        return url
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{secret}@{parts.hostname}:{parts.port}"))


def _redis_config(data: Path, password: str) -> str:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return (
        "\n".join(
            [
                f"port {REDIS_PORT}",
                "bind 127.0.0.1",
                f"dir {quoted(str(data))}",
                "appendonly yes",
                "appendfsync everysec",
                'save ""',
                f"logfile {quoted(str(data / 'redis.log'))}",
                f"requirepass {quoted(password)}",  # in a 0600 file, never on the command line (ps shows that)
            ]
        )
        + "\n"
    )


def start_redis(password: str) -> subprocess.Popen[bytes]:
    if _port_open(REDIS_PORT):
        raise SystemExit(
            f"parcelhook: port {REDIS_PORT} is already taken (a previous `make run` still running?). "
            "Stop it or set PARCELHOOK_REDIS_PORT."
        )
    data = VAR / "redis"
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit(
            "parcelhook: redis-server is not installed (make run installs it with apt-get as root)"
        )
    config = data / "redis.conf"
    _private_file(config, _redis_config(data, password))
    process = subprocess.Popen(  # noqa: S603 - fixed argv
        [binary, str(config)],
        start_new_session=True,  # Ctrl-C is ours to handle: Redis stops last
        umask=PRIVATE,  # redis-server has no umask setting: its AOF files and log are created 0600
    )
    for _ in range(100):
        if _port_open(REDIS_PORT):
            return process
        time.sleep(0.05)
    process.terminate()
    raise SystemExit(f"parcelhook: redis-server did not start; see {data / 'redis.log'}")


def generated_secret(name: str, make: Callable[[], str] = lambda: secrets.token_urlsafe(32)) -> str:
    """A secret kept in var/<name>, created once, readable by its owner only from the start."""
    path = VAR / name
    if not path.exists():
        VAR.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make() + "\n")
    return path.read_text().strip()


def _create_sqlite_file(url: str) -> None:
    """SQLite creates its WAL and SHM files with the database file's mode: make that 0600."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            _private_file(path)


def prepare(env: dict[str, str]) -> tuple[Settings, str]:
    from store import merchants as merchant_store
    from store import orders as order_store
    from store.database import Database
    from store.migrate import upgrade

    try:
        settings = Settings.from_env(env, require_admin_token=True, require_encryption_keys=True)
    except SettingsError as exc:
        raise SystemExit(f"parcelhook: configuration error: {exc}") from None
    _create_sqlite_file(settings.database_url)
    upgrade(settings.database_url, vault=settings.vault)
    db = Database(settings.database_url)
    with db.write() as conn:
        merchant = merchant_store.get(conn, DEMO_MERCHANT, settings.vault)
        if merchant is None:
            merchant, _ = merchant_store.upsert(
                conn,
                DEMO_MERCHANT,
                vault=settings.vault,
                name="Demo Store",
                profile={
                    "email_from": "shipping@demo-store.example",
                    "sms_from": "+15005550006",
                    "support_email": "help@demo-store.example",
                    "alert_email": "ops@demo-store.example",
                    "order_ref_pattern": r"Order (\d+)",
                },
            )
        order_store.register(
            db,
            conn,
            merchant.id,
            "1001",
            customer={
                "name": "Jane Doe",
                "email": "jane@example.com",
                "phone": "+14155550123",
                "locale": "en",
                "timezone": "America/New_York",
            },
            notify_email=True,
            notify_sms=True,
        )
    db.dispose()
    return settings, merchant.webhook_url(settings.public_url)


def banner(settings: Settings, webhook_url: str, token: str) -> str:
    admin = f"http://127.0.0.1:{settings.admin_port}"
    sample = PROJECT_ROOT / "examples" / "shippo" / "transaction_created.json"
    return f"""
parcelhook is starting (Ctrl-C stops everything)
  receiver (Shippo points here)  {settings.public_url}
  admin API + dashboard           {admin}   ops dashboard: {admin}/ops
  admin token                     {token}   (also in var/admin-token)
  demo merchant webhook URL       {webhook_url}

Try it:
  curl -sS -X POST '{webhook_url}' \\
       -H 'Content-Type: application/json' --data-binary @{sample.relative_to(PROJECT_ROOT)}
  curl -sS -H 'Authorization: Bearer {token}' {admin}/api/merchants/{DEMO_MERCHANT}/orders/1001
  curl -sS -H 'Authorization: Bearer {token}' {admin}/api/outbox
"""


def wait_ready(url: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(mode: str) -> int:
    # SIGTERM/SIGHUP (a closed terminal, `timeout`, systemd) stop everything like Ctrl-C does
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    os.umask(PRIVATE)  # inherited by Redis, honcho and the four processes: var/ stays the owner's
    secure_var_dir()
    from store.vault import generate_key

    env = dict(os.environ)
    redis_password = generated_secret("redis-password")
    env["PARCELHOOK_BROKER_URL"] = private_redis_url(env.get("PARCELHOOK_BROKER_URL"), redis_password)
    if env.get("PARCELHOOK_REDIS_URL"):
        env["PARCELHOOK_REDIS_URL"] = private_redis_url(env["PARCELHOOK_REDIS_URL"], redis_password)
    env["PARCELHOOK_ADMIN_TOKEN"] = env.get("PARCELHOOK_ADMIN_TOKEN") or generated_secret("admin-token")
    env["PARCELHOOK_SIGNING_KEY"] = env.get("PARCELHOOK_SIGNING_KEY") or generated_secret("signing-key")
    env["PARCELHOOK_ENCRYPTION_KEYS"] = env.get("PARCELHOOK_ENCRYPTION_KEYS") or generated_secret(
        "encryption-key", generate_key
    )
    env.setdefault("PARCELHOOK_PUBLIC_URL", f"http://127.0.0.1:{env.get('PARCELHOOK_WEB_PORT') or 8000}")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    redis_process = start_redis(redis_password)
    honcho: subprocess.Popen[bytes] | None = None
    try:
        settings, webhook_url = prepare(env)
        print(banner(settings, webhook_url, env["PARCELHOOK_ADMIN_TOKEN"]), flush=True)
        honcho = subprocess.Popen(  # noqa: S603
            [str(Path(sys.executable).parent / "honcho"), "start", "-f", str(PROJECT_ROOT / "Procfile")],
            cwd=PROJECT_ROOT,
            env=env,
        )
        if mode == "demo":
            threading.Thread(target=_demo, args=(settings,), daemon=True).start()
        return honcho.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if honcho is not None and honcho.poll() is None:
            honcho.send_signal(signal.SIGINT)
            try:
                honcho.wait(20)
            except subprocess.TimeoutExpired:
                honcho.kill()
        redis_process.terminate()
        redis_process.wait(10)
        print(f"parcelhook stopped; data kept under {VAR}", flush=True)


def _demo(settings: Settings) -> None:
    from admin.demo import run_demo

    if not wait_ready(f"http://127.0.0.1:{settings.web_port}/readyz"):
        print("demo: the receiver did not become ready; not replaying", flush=True)
        return
    summary = run_demo(settings)
    print("demo traffic replayed: " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "run"
    if command not in ("run", "demo"):
        raise SystemExit("usage: python -m admin.devserver run|demo")
    raise SystemExit(main(command))
