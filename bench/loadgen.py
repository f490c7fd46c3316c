"""HTTP load generator: N client processes, one keep-alive-capable ``http.client`` connection each.

Each client builds its own unique ``track_updated`` bodies (a slice of the index space), signs
them with a fresh timestamp, sends ``warmup`` untimed requests, waits at a barrier with the
others, then sends its timed share closed-loop (next request as soon as the answer is in),
bounded by count AND a deadline. Kept free of parcelhook imports except the signer, so the
clients start fast under ``spawn``.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ClientJob:
    port: int
    path: str
    secret: str | None
    template: dict[str, Any]
    first_index: int
    warmup: int
    count: int
    max_seconds: float
    salt: str


@dataclass
class ClientResult:
    sent: int = 0
    ok: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    warmup_ok: int = 0


def _bodies(job: ClientJob, start: int, count: int) -> list[tuple[bytes, dict[str, str]]]:
    from bench.common import dumps, track_body
    from ingest.signature import HEADER, sign

    now = int(time.time())
    out = []
    for i in range(start, start + count):
        body = dumps(track_body(job.template, i, job.salt)).encode()
        headers = {"Content-Type": "application/json"}
        if job.secret:
            headers[HEADER] = sign(job.secret, body, now)
        out.append((body, headers))
    return out


def _post(
    conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, str]:
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        return 0, type(exc).__name__
    try:
        word = str(json.loads(payload).get("status") or json.loads(payload).get("error"))
    except ValueError:
        word = "unparseable"
    return response.status, word


def run_client(job: ClientJob, barrier: Any, results: Any) -> None:
    result = ClientResult()
    try:
        warm = _bodies(job, job.first_index, job.warmup)
        timed = _bodies(job, job.first_index + job.warmup, job.count)
        conn = http.client.HTTPConnection("127.0.0.1", job.port, timeout=30)
        for body, headers in warm:
            status, word = _post(conn, job.path, body, headers)
            result.warmup_ok += status == 200 and word == "queued"
        barrier.wait(timeout=120)
        result.started = time.monotonic()
        deadline = result.started + job.max_seconds
        for body, headers in timed:
            t0 = time.perf_counter()
            status, word = _post(conn, job.path, body, headers)
            result.latencies.append(time.perf_counter() - t0)
            result.sent += 1
            result.outcomes[f"{status} {word}"] += 1
            result.ok += status == 200 and word == "queued"
            if time.monotonic() > deadline:
                break
        result.finished = time.monotonic()
        conn.close()
    finally:
        results.put(result)


@dataclass
class LoadResult:
    clients: list[ClientResult]

    @property
    def sent(self) -> int:
        return sum(c.sent for c in self.clients)

    @property
    def ok(self) -> int:
        return sum(c.ok for c in self.clients)

    @property
    def warmup_ok(self) -> int:
        return sum(c.warmup_ok for c in self.clients)

    @property
    def elapsed(self) -> float:
        return max(c.finished for c in self.clients) - min(c.started for c in self.clients)

    @property
    def latencies(self) -> list[float]:
        return [x for c in self.clients for x in c.latencies]

    @property
    def outcomes(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for c in self.clients:
            total.update(c.outcomes)
        return total


def run_load(
    *,
    port: int,
    path: str,
    secret: str | None,
    template: dict[str, Any],
    clients: int,
    warmup: int,
    requests: int,
    max_seconds: float,
    salt: str,
) -> LoadResult:
    """``requests`` timed requests split over ``clients`` processes (plus ``warmup`` each, untimed)."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(clients)
    results = ctx.Queue()
    share = requests // clients
    processes = []
    for n in range(clients):
        job = ClientJob(port, path, secret, template, n * (share + warmup), warmup, share, max_seconds, salt)
        processes.append(ctx.Process(target=run_client, args=(job, barrier, results), daemon=True))
    collected: list[ClientResult] = []
    try:
        for p in processes:
            p.start()
        deadline = time.monotonic() + max_seconds + 180
        while len(collected) < clients and time.monotonic() < deadline:
            try:
                collected.append(results.get(timeout=1))
            except Exception:
                if all(not p.is_alive() for p in processes) and results.empty():
                    break
                continue
    finally:
        for p in processes:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(5)
    if len(collected) < clients:
        raise RuntimeError(f"only {len(collected)}/{clients} load clients reported back")
    return LoadResult(collected)
