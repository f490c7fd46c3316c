"""`ingest`: signed ``track_updated`` webhooks per second accepted by `web`, against its floor.

Both servers run exactly as the Procfile's ``web`` line runs: ``gunicorn -c
python:ingest.gunicorn_conf --workers 2`` (gevent workers, access log on), on a private
Redis. The load is `wrk` (``bench/ingest.lua``): every request a distinct webhook (new scan
ids and tracking number), HMAC-signed with a fresh timestamp. The floor and parcelhook run
in interleaved pairs (floor, parcelhook, floor, parcelhook, …) so that other work on the
machine hits both alike; the figures are the medians over the pairs, with their spread.

Each run lasts ``seconds`` (wrk's ``-d``; a thread that runs out of its distinct bodies stops
early, which would make the rate wrong, so that is a failure). Correctness is checked, not
assumed: every answer must be ``200 … queued``, and afterwards the queue must hold one message per answered request (at most the few still in
flight when wrk stopped).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import common
from bench.common import BenchError, say

WORKERS = 2
WRK_THREADS = 1
CONNECTIONS = 16
MERCHANT = "benchco"
FLOOR_KEY = "bench:floor"
LUA = common.BENCH_DIR / "ingest.lua"
#: distinct bodies written per second of a run: more than either server answers on 2 CPUs
BODIES_PER_SECOND = 8000


def params(quick: bool) -> dict[str, Any]:
    return {
        "gunicorn": f"-c python:ingest.gunicorn_conf --workers {WORKERS} (the Procfile's web line, both servers)",
        "load": f"wrk -t{WRK_THREADS} -c{CONNECTIONS} -s bench/ingest.lua",
        "pairs": 2 if quick else 3,
        "warmup_seconds": 2,
        "seconds": 4 if quick else 8,
        "bodies_per_second": BODIES_PER_SECOND,
        "body": "tests/fixtures/shippo/track_updated_transit.json (unique scan ids + tracking number per request)",
        "hmac": True,
    }


def _wrk() -> str:
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk is not installed: scripts/system-deps.sh wrk (make bench does it)")
    return found


def _gunicorn(app: str, port: int, env: dict[str, str], log: Path) -> Any:
    """The Procfile's web command (ingest/gunicorn_conf.py), for either app."""
    argv = [
        str(common.VENV_BIN / "gunicorn"),
        "-c",
        "python:ingest.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(WORKERS),
        app,
    ]
    return common.spawn(argv, env=env, log=log)


def _wait_ready(port: int, process: Any, log: Path, timeout: float = 60.0) -> None:
    common.wait_for_port(port, timeout, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise BenchError(f"server on {port} never became ready:\n{common.log_tail(log)}")


def write_requests(path: Path, secret: str, count: int, salt: str) -> None:
    """``count`` distinct signed bodies, one ``signature<TAB>body`` line each (read by ingest.lua)."""
    from ingest.signature import sign

    template = common.fixture("track_updated_transit.json")
    now = int(time.time())
    with path.open("w") as out:
        for i in range(count):
            body = common.dumps(common.track_body(template, i, salt))
            out.write(f"{sign(secret, body.encode(), now)}\t{body}\n")


def run_wrk(port: int, path: str, requests_file: Path, seconds: float) -> dict[str, Any]:
    argv = [
        _wrk(),
        f"-t{WRK_THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://127.0.0.1:{port}",
        "--",
        str(requests_file),
        path,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"duration_us"')]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]} {done.stdout[-2000:]}")
    out: dict[str, Any] = json.loads(lines[-1])
    out["stderr"] = done.stderr.strip()[-500:]
    return out


def _measure(
    name: str,
    app: str,
    env: dict[str, str],
    workdir: Path,
    *,
    path: str,
    secret: str,
    queue_len: Any,
    p: dict[str, Any],
    salt: str,
) -> dict[str, Any]:
    port = common.free_port()
    log = workdir / f"{name}-{salt}.log"
    warm_file, timed_file = workdir / f"warm-{salt}.txt", workdir / f"timed-{salt}.txt"
    write_requests(warm_file, secret, BODIES_PER_SECOND * p["warmup_seconds"], f"w{salt}")
    write_requests(timed_file, secret, BODIES_PER_SECOND * p["seconds"], salt)
    server = _gunicorn(app, port, env, log)
    try:
        _wait_ready(port, server, log)
        warm = run_wrk(port, path, warm_file, p["warmup_seconds"])
        timed = run_wrk(port, path, timed_file, p["seconds"])
        time.sleep(0.5)  # the last in-flight requests finish before the queue is counted
    finally:
        common.stop_process(server)
        warm_file.unlink(missing_ok=True)
        timed_file.unlink(missing_ok=True)
    queued = int(queue_len())
    seconds = timed["duration_us"] / 1e6
    lat = timed["latency_us"]
    figures: dict[str, Any] = {
        "requests": timed["sent"],
        "accepted": timed["ok"],
        "seconds": round(seconds, 3),
        "per_second": round(timed["ok"] / seconds, 1) if seconds > 0 else 0.0,
        "latency_ms": {k: round(lat[k] / 1000, 2) for k in ("p50", "p90", "p99", "max")},
        "wrk_errors": timed["errors"],
        "queue_length_after": queued,
        "queue_length_expected": f"{warm['ok'] + timed['ok']}..{warm['sent'] + timed['sent']}",
    }
    problems = []
    for phase, run in (("warm-up", warm), ("timed", timed)):
        if run["bad"] or any(run["errors"].values()):
            problems.append(
                f"{phase}: {run['bad']} answers were not '200 queued', wrk errors {run['errors']}"
                f" {run['stderr'][:200]}"
            )
        if run["exhausted_threads"] and phase == "timed":
            problems.append("timed: wrk ran out of distinct bodies (raise BODIES_PER_SECOND)")
    if not warm["ok"] + timed["ok"] <= queued <= warm["sent"] + timed["sent"]:
        problems.append(f"queue holds {queued} messages, expected {figures['queue_length_expected']}")
    figures["correct"] = not problems
    figures["problems"] = problems
    say(
        f"{name}: {figures['per_second']}/s, p50 {figures['latency_ms']['p50']} ms, "
        f"p99 {figures['latency_ms']['p99']} ms, queue {queued}"
    )
    return figures


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["per_second"] for r in runs]
    p50s = [r["latency_ms"]["p50"] for r in runs]
    p99s = [r["latency_ms"]["p99"] for r in runs]
    return {
        "per_second": round(statistics.median(rates), 1),
        "per_second_range": [min(rates), max(rates)],
        "latency_ms": {"p50": round(statistics.median(p50s), 2), "p99": round(statistics.median(p99s), 2)},
        "p99_range_ms": [min(p99s), max(p99s)],
        "correct": all(r["correct"] for r in runs),
        "runs": runs,
    }


def setup(workdir: Path, redis: Any) -> tuple[dict[str, str], str, str]:
    """A migrated SQLite DB with one merchant with an HMAC secret: (env, webhook path, secret)."""
    db_url = common.sqlite_url(workdir)
    common.migrate(db_url)
    secret = secrets.token_hex(16)
    from store.database import Database
    from store.vault import generate_key

    encryption_key = generate_key()
    db = Database(db_url)
    try:
        merchant = common.seed_merchant(
            db,
            MERCHANT,
            name="Bench Co",
            profile={"email_from": "ship@bench.example"},
            hmac_secrets=[secret],
            encryption_key=encryption_key,
        )
    finally:
        db.dispose()
    env = common.app_env(
        workdir,
        db_url,
        redis.url,
        PARCELHOOK_ENCRYPTION_KEYS=encryption_key,
        BENCH_FLOOR_REDIS_URL=redis.url,
        BENCH_FLOOR_KEY=FLOOR_KEY,
    )
    return env, f"/webhooks/shippo/{merchant.slug}?token={merchant.webhook_token}", secret


def run(
    quick: bool = False, *, contenders: dict[str, tuple[str, dict[str, str]]] | None = None
) -> dict[str, Any]:
    """``contenders``: name → (app, extra env), measured in turn after the floor in every pair
    (default: parcelhook's ``ingest.wsgi:app`` from this tree)."""
    p = params(quick)
    contenders = contenders or {"parcelhook": ("ingest.wsgi:app", {})}
    runs: dict[str, list[dict[str, Any]]] = {"floor": [], **{name: [] for name in contenders}}
    with common.temp_dir("ph-bench-ingest-") as workdir, common.redis_server(workdir) as redis:
        client = redis.client()
        env, path, secret = setup(workdir, redis)
        for pair in range(p["pairs"]):
            client.flushdb()
            runs["floor"].append(
                _measure(
                    "floor",
                    "bench.floor_app:app",
                    env,
                    workdir,
                    path=path,
                    secret=secret,
                    queue_len=lambda: client.llen(FLOOR_KEY),
                    p=p,
                    salt=f"f{pair}",
                )
            )
            for name, (app, extra) in contenders.items():
                client.flushdb()
                figures = _measure(
                    name,
                    app,
                    {**env, **extra},
                    workdir,
                    path=path,
                    secret=secret,
                    queue_len=lambda: client.llen(common.EVENTS_KEY),
                    p=p,
                    salt=f"{name[0]}{pair}",
                )
                # one queued message, decoded: the worker would get exactly what was posted
                sample = client.hget(f"{common.EVENTS_KEY}.msgs", client.lindex(common.EVENTS_KEY, 0) or b"")
                if sample is None or json.loads(sample)["actor_name"] != "process_event":
                    figures["correct"] = False
                    figures["problems"].append("the queued message is not a process_event message")
                runs[name].append(figures)
        client.close()
    floor = _summary(runs["floor"])
    result: dict[str, Any] = {
        "params": p,
        "unit": "accepted webhooks per second (wrk, all connections)",
        "load_average_at_end": os.getloadavg(),
        "floor": floor,
        "table": [],
    }
    for name in contenders:
        summary = _summary(runs[name])
        ratios = [r["per_second"] / f["per_second"] for r, f in zip(runs[name], runs["floor"], strict=True)]
        p99_ratios = [
            r["latency_ms"]["p99"] / f["latency_ms"]["p99"]
            for r, f in zip(runs[name], runs["floor"], strict=True)
        ]
        summary["ratio"] = round(statistics.median(ratios), 3)
        summary["ratio_per_pair"] = [round(x, 3) for x in ratios]
        summary["p99_ratio"] = round(statistics.median(p99_ratios), 2)
        summary["p99_ratio_per_pair"] = [round(x, 2) for x in p99_ratios]
        result["result" if name == "parcelhook" else name] = summary
        result["table"] += [
            (
                f"ingest {name}",
                f"{summary['per_second']:.0f}/s",
                f"p50 {summary['latency_ms']['p50']:.1f} ms  p99 {summary['latency_ms']['p99']:.1f} ms "
                f"(median of {p['pairs']}; {summary['per_second_range'][0]:.0f}–{summary['per_second_range'][1]:.0f}/s)",
            ),
            (
                f"ingest {name} ratio",
                f"{summary['ratio']:.2f}",
                f"throughput / floor, per pair {summary['ratio_per_pair']}; p99 / floor's {summary['p99_ratio']}",
            ),
        ]
    result["table"].insert(
        0,
        (
            "ingest floor (bare Flask+LPUSH)",
            f"{floor['per_second']:.0f}/s",
            f"p50 {floor['latency_ms']['p50']:.1f} ms  p99 {floor['latency_ms']['p99']:.1f} ms "
            f"({floor['per_second_range'][0]:.0f}–{floor['per_second_range'][1]:.0f}/s)",
        ),
    )
    result["ratio"] = result["result"]["ratio"] if "result" in result else None
    result["ratio_means"] = (
        "median over pairs of parcelhook throughput / floor throughput (same gunicorn, same load)"
    )
    result["correct"] = floor["correct"] and all(
        result.get("result" if n == "parcelhook" else n, {}).get("correct") for n in contenders
    )
    return result
