"""Several hosts on one machine: the fault rig's Procfile processes as a fleet would run them.

Each ``web``, ``worker`` and ``scheduler`` group is its own process group (its own session, so a
SIGKILL to the group is a host losing power for that group) and gets its own loopback address:
all of 127.0.0.0/8 is loopback on Linux, so 127.0.0.2, 127.0.0.3 … need no privileges. ``web``
binds its address (the Procfile's ``--bind 127.0.0.1:`` rewritten, the same port on every
host); ``worker`` and ``scheduler`` serve no port, so for them the address is only a name.
They share one PostgreSQL and one broker, and nothing else: every group reaches them by URL.
``admin`` (internal, one instance) stays on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from tests.support.fault_rig import Proc, Rig
from tests.support.shippo_traffic import SendReport, ShippoSender


@dataclass(frozen=True)
class Host:
    """One Procfile process group on its own address."""

    name: str  # "web-1", "worker-2", "scheduler-1"
    proc: Proc

    @property
    def address(self) -> str:
        return self.proc.address

    @property
    def alive(self) -> bool:
        return self.proc.popen.poll() is None

    def log(self) -> str:
        return self.proc.log.read_text(errors="replace")


class Fleet:
    """``web``, ``worker`` and ``scheduler`` hosts on a rig's PostgreSQL and broker."""

    def __init__(self, rig: Rig, *, web: int = 2, worker: int = 2, scheduler: int = 2) -> None:
        self.rig = rig
        self.counts = {"web": web, "worker": worker, "scheduler": scheduler}
        self.hosts: dict[str, list[Host]] = {"web": [], "worker": [], "scheduler": []}
        self._next = 2  # 127.0.0.1 is the services' (PostgreSQL, broker, admin)

    def start(self, per_host: dict[str, dict[str, str]] | None = None) -> None:
        """``admin``, then every host; ``per_host``: environment for every host of a role
        (``WEB_CONCURRENCY``, ``WORKER_PROCESSES`` …)."""
        self.rig.start("admin")
        for role in ("web", "worker", "scheduler"):
            for _ in range(self.counts[role]):
                self.add(role, (per_host or {}).get(role))
        self.rig.wait_for_workers()

    def add(self, role: str, env: dict[str, str] | None = None) -> Host:
        address = f"127.0.0.{self._next}"
        self._next += 1
        proc = self.rig.start(role, address=address, env=env)
        host = Host(f"{role}-{len(self.hosts[role]) + 1}", proc)
        self.hosts[role].append(host)
        return host

    def live(self, role: str) -> list[Host]:
        return [h for h in self.hosts[role] if h.alive]

    def power_off(self, host: Host) -> None:
        """SIGKILL to the host's whole process group (the dramatiq master and its workers alike);
        nothing restarts it."""
        self.rig.kill9(host.proc)

    def web_urls(self, webhook_url: str) -> list[str]:
        """The merchant's webhook URL on each ``web`` host (what a load balancer spreads over)."""
        parts = urlsplit(webhook_url)
        port = self.rig.web_port
        return [urlunsplit(parts._replace(netloc=f"{h.address}:{port}")) for h in self.hosts["web"]]


def established_to(port: int) -> str:
    """``ss`` (iproute2) lines of the established TCP connections to ``port`` on this machine:
    local address, peer address, and the processes holding the socket (``users:((…,pid=N,…))``)."""
    return subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout


def connections_to(port: int) -> Counter[int]:
    """Established TCP connections to ``port`` on this machine, by the client's process group."""
    groups: Counter[int] = Counter()
    for pid in re.findall(r"pid=(\d+)", established_to(port)):
        try:
            groups[os.getpgid(int(pid))] += 1
        except ProcessLookupError:
            pass
    return groups


class ConnectionWatch:
    """The most connections each host held to one port (PostgreSQL's) at any sample, once a second."""

    def __init__(self, fleet: Fleet, port: int) -> None:
        self.fleet, self.port = fleet, port
        self.peak: Counter[str] = Counter()
        self.stop = threading.Event()

    def sample(self) -> None:
        by_group = connections_to(self.port)
        for hosts in self.fleet.hosts.values():
            for host in hosts:
                n = by_group.get(host.proc.popen.pid, 0)
                self.peak[host.name] = max(self.peak[host.name], n)

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.sample()


class SpreadSender:
    """One Shippo-like sender per ``web`` host, each with every n-th webhook (round robin, as a
    load balancer would): duplicates and neighbours of one order land on different hosts."""

    def __init__(self, urls: list[str], *, rate_per_s: float, horizon_s: float = 120.0) -> None:
        share = rate_per_s / len(urls)
        self.senders = [ShippoSender(url, rate_per_s=share, horizon_s=horizon_s) for url in urls]

    @property
    def sent(self) -> int:
        return sum(s.report.sent for s in self.senders)

    def start_background(self, bodies: list[bytes]) -> list[threading.Thread]:
        n = len(self.senders)
        return [s.start_background(bodies[i::n]) for i, s in enumerate(self.senders)]

    def per_host(self) -> list[int]:
        """Webhooks answered by each ``web`` host."""
        return [s.report.sent for s in self.senders]

    @property
    def report(self) -> SendReport:
        return merged(s.report for s in self.senders)


def merged(reports: Iterable[SendReport]) -> SendReport:
    total = SendReport()
    for r in reports:
        total.answers.update(r.answers)
        total.accepted |= r.accepted
        total.retries += r.retries
        total.gave_up += r.gave_up
        total.refused += r.refused
    return total
