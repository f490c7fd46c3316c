"""`ingest`: signed ``track_updated`` webhooks per second accepted by `web`, against its floor.

Both servers run under the Procfile's gunicorn command (``--workers 2``, access log on) on a
private Redis; the same client processes hit them with unique bodies (new scan id and
tracking number each, so nothing is a duplicate). Correctness is checked, not assumed:
every answer must be ``200 queued`` and the queue must hold exactly one message per request.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import common
from bench.common import BenchError, say
from bench.loadgen import LoadResult, run_load

WORKERS = 2
CLIENTS = 4
MERCHANT = "benchco"
FLOOR_KEY = "bench:floor"


def params(quick: bool) -> dict[str, Any]:
    return {
        "gunicorn_workers": WORKERS,
        "client_processes": CLIENTS,
        "requests": 2000 if quick else 6000,
        "warmup_per_client": 25 if quick else 50,
        "max_seconds": 20.0 if quick else 60.0,
        "body": "tests/fixtures/shippo/track_updated_transit.json (unique scan id + tracking number per request)",
        "hmac": True,
    }


#: the Procfile's: the path without the query string (the webhook token never reaches a log)
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(L)s'


def _gunicorn(app: str, port: int, env: dict[str, str], log: Path) -> Any:
    argv = [str(common.VENV_BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", str(WORKERS),
            "--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT, app]
    return common.spawn(argv, env=env, log=log)


def _wait_ready(port: int, process: Any, log: Path, timeout: float = 60.0) -> None:
    common.wait_for_port(port, timeout, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise BenchError(f"server on {port} never became ready:\n{common.log_tail(log)}")


def _measure(
    name: str, app: str, env: dict[str, str], workdir: Path, *, path: str, secret: str | None,
    queue_len: Any, p: dict[str, Any], salt: str,
) -> dict[str, Any]:
    port = common.free_port()
    log = workdir / f"{name}.log"
    server = _gunicorn(app, port, env, log)
    try:
        _wait_ready(port, server, log)
        load: LoadResult = run_load(
            port=port, path=path, secret=secret, template=common.fixture("track_updated_transit.json"),
            clients=CLIENTS, warmup=p["warmup_per_client"], requests=p["requests"],
            max_seconds=p["max_seconds"], salt=salt,
        )
    finally:
        common.stop_process(server)
    expected = load.warmup_ok + load.ok
    queued = int(queue_len())
    lat = load.latencies
    figures: dict[str, Any] = {
        "requests": load.sent,
        "accepted": load.ok,
        "outcomes": dict(load.outcomes),
        "seconds": round(load.elapsed, 3),
        "per_second": round(load.ok / load.elapsed, 1) if load.elapsed > 0 else 0.0,
        "latency_ms": {"p50": common.ms(common.percentile(lat, 50)), "p99": common.ms(common.percentile(lat, 99)),
                       "max": common.ms(max(lat) if lat else float("nan"))},
        "queue_length_after": queued,
        "queue_length_expected": expected,
    }
    problems = []
    if load.ok != load.sent:
        problems.append(f"{load.sent - load.ok} of {load.sent} answers were not '200 queued': {dict(load.outcomes)}")
    if load.warmup_ok != CLIENTS * p["warmup_per_client"]:
        problems.append(f"warm-up: only {load.warmup_ok} of {CLIENTS * p['warmup_per_client']} were '200 queued'")
    if queued != expected:
        problems.append(f"queue holds {queued} messages, expected {expected}")
    figures["correct"] = not problems
    figures["problems"] = problems
    say(f"{name}: {figures['per_second']}/s, p50 {figures['latency_ms']['p50']} ms, "
        f"p99 {figures['latency_ms']['p99']} ms, queue {queued}/{expected}")
    return figures


def run(quick: bool = False) -> dict[str, Any]:
    p = params(quick)
    with common.temp_dir("ph-bench-ingest-") as workdir, common.redis_server(workdir) as redis:
        client = redis.client()
        db_url = common.sqlite_url(workdir)
        common.migrate(db_url)
        secret = secrets.token_hex(16)
        from store import merchants as merchant_store
        from store.database import Database
        from store.vault import Vault, generate_key

        encryption_key = generate_key()
        db = Database(db_url)
        try:
            with db.write() as conn:
                merchant, _ = merchant_store.upsert(conn, MERCHANT, vault=Vault([encryption_key]), name="Bench Co",
                                                    hmac_secrets=[secret],
                                                    profile={"email_from": "ship@bench.example"})
        finally:
            db.dispose()
        path = f"/webhooks/shippo/{merchant.slug}?token={merchant.webhook_token}"
        env = common.child_env(
            PARCELHOOK_DATABASE_URL=db_url, PARCELHOOK_BROKER_URL=redis.url,
            PARCELHOOK_ADMIN_TOKEN=secrets.token_urlsafe(16), PARCELHOOK_SIGNING_KEY=secrets.token_urlsafe(16), PARCELHOOK_VAR_DIR=str(workdir / "var"),
            PARCELHOOK_ENCRYPTION_KEYS=encryption_key,
            BENCH_FLOOR_REDIS_URL=redis.url, BENCH_FLOOR_KEY=FLOOR_KEY,
        )
        client.flushdb()
        floor = _measure("floor", "bench.floor_app:app", env, workdir, path=path, secret=secret,
                         queue_len=lambda: client.llen(FLOOR_KEY), p=p, salt="f")
        client.flushdb()
        parcelhook = _measure("parcelhook", "ingest.wsgi:app", env, workdir, path=path, secret=secret,
                              queue_len=lambda: client.llen(common.EVENTS_KEY), p=p, salt="p")
        # one queued message, decoded: the worker would get exactly what was posted
        sample = client.hget(f"{common.EVENTS_KEY}.msgs", client.lindex(common.EVENTS_KEY, 0) or b"")
        if sample is None or json.loads(sample)["actor_name"] != "process_event":
            parcelhook["correct"] = False
            parcelhook["problems"].append("the queued message is not a process_event message")
        client.close()
    ratio = parcelhook["per_second"] / floor["per_second"] if floor["per_second"] else float("nan")
    return {
        "params": p,
        "unit": "accepted webhooks per second (all client processes together)",
        "result": parcelhook,
        "floor": floor,
        "ratio": round(ratio, 3),
        "ratio_means": "parcelhook throughput / floor throughput (1.0 = as fast as the bare LPUSH app)",
        "correct": parcelhook["correct"] and floor["correct"],
        "table": [
            ("ingest parcelhook", f"{parcelhook['per_second']:.0f}/s",
             f"p50 {parcelhook['latency_ms']['p50']:.1f} ms  p99 {parcelhook['latency_ms']['p99']:.1f} ms"),
            ("ingest floor (bare Flask+LPUSH)", f"{floor['per_second']:.0f}/s",
             f"p50 {floor['latency_ms']['p50']:.1f} ms  p99 {floor['latency_ms']['p99']:.1f} ms"),
            ("ingest ratio", f"{ratio:.2f}", "parcelhook / floor throughput"),
        ],
    }
