"""A private RabbitMQ node for tests: Debian's ``rabbitmq-server`` on free ports, in a tmp dir.

Started once per pytest session (``rabbitmq_service``; it takes a few seconds) and stopped
after it. Nothing of the host's RabbitMQ is used or touched: its own node name, AMQP,
distribution and management ports, Mnesia/log dirs, config and enabled-plugins files, and
its own Erlang cookie (``HOME`` is the tmp dir, which holds ``.erlang.cookie``).

A missing ``rabbitmq-server`` skips on a laptop and fails under ``CI=true``
(``tests.support.services.missing``). Other test modules use the fixture by importing it::

    from tests.support.rabbitmq import rabbitmq_service  # noqa: F401 - fixture

``RabbitNode.vhost()`` gives a test its own virtual host (created through the management
API, deleted after the test), so tests never see each other's queues.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.support.services import free_port, required

SERVER_DIR = Path("/usr/lib/rabbitmq/bin")
USER, PASSWORD = "parcelhook", "test-" + secrets.token_hex(8)


def _binary(name: str) -> str | None:
    """Debian's real scripts (``/usr/sbin`` wrappers would switch to the ``rabbitmq`` user)."""
    direct = SERVER_DIR / name
    return str(direct) if direct.exists() else shutil.which(name)


@dataclass
class RabbitNode:
    amqp_port: int
    management_port: int
    workdir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    def amqp_url(self, vhost: str = "/") -> str:
        return f"amqp://{USER}:{PASSWORD}@127.0.0.1:{self.amqp_port}/{quote(vhost, safe='')}"

    @property
    def management_url(self) -> str:
        return f"http://{USER}:{PASSWORD}@127.0.0.1:{self.management_port}"

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The management HTTP API as the test user (``path`` starts with ``/api/``)."""
        return requests.request(
            method,
            f"http://127.0.0.1:{self.management_port}{path}",
            auth=(USER, PASSWORD),
            timeout=10,
            **kwargs,
        )

    def connections(self, vhost: str | None = None) -> list[dict[str, Any]]:
        """Open AMQP connections (the management API; its stats lag by up to its refresh)."""
        rows = self.api("GET", "/api/connections").json()
        return [c for c in rows if vhost is None or c.get("vhost") == vhost]

    @contextmanager
    def vhost(self) -> Iterator[str]:
        name = "t-" + secrets.token_hex(6)
        encoded = quote(name, safe="")
        self.api("PUT", f"/api/vhosts/{encoded}").raise_for_status()
        self.api(
            "PUT",
            f"/api/permissions/{encoded}/{USER}",
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
        try:
            yield name
        finally:
            self.api("DELETE", f"/api/vhosts/{encoded}")

    def start(self) -> None:
        server = _binary("rabbitmq-server")
        assert server
        self._log = (self.workdir / "server.out").open("wb")
        self.process = subprocess.Popen(
            [server], env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited early:\n{self.output()[-3000:]}")
            try:
                if self.api("GET", "/api/overview").status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"rabbitmq-server did not come up in 90 s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        path = self.workdir / "server.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)  # beam.smp shuts down cleanly on SIGTERM
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(10)
        if self._log is not None:
            self._log.close()


def _node_env(workdir: Path, amqp_port: int, management_port: int) -> dict[str, str]:
    cookie = workdir / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(20).upper())
    cookie.chmod(0o400)
    (workdir / "rabbitmq.conf").write_text(
        "\n".join(
            [
                f"listeners.tcp.default = 127.0.0.1:{amqp_port}",
                f"management.tcp.port = {management_port}",
                "management.tcp.ip = 127.0.0.1",
                f"default_user = {USER}",
                f"default_pass = {PASSWORD}",
                "default_user_tags.administrator = true",
                # the management API's message/queue rates: refreshed every second, not 5
                "collect_statistics_interval = 1000",
                "log.console = false",
                "log.file.level = warning",
                "",
            ]
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
    env.update(
        {
            "HOME": str(workdir),  # the Erlang cookie of this node and its CLI tools
            "RABBITMQ_NODENAME": f"ph-{secrets.token_hex(4)}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(amqp_port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(workdir / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(workdir / "rabbitmq.pid"),
        }
    )
    return env


@contextmanager
def rabbitmq_node() -> Iterator[RabbitNode]:
    server, plugins = required("rabbitmq-server", _binary("rabbitmq-server"), _binary("rabbitmq-plugins"))
    workdir = Path(tempfile.mkdtemp(prefix="ph-rabbitmq-"))
    amqp_port, management_port = free_port(), free_port()
    env = _node_env(workdir, amqp_port, management_port)
    subprocess.run(
        [plugins, "--offline", "enable", "rabbitmq_management"],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    node = RabbitNode(amqp_port, management_port, workdir, env)
    try:
        node.start()
        yield node
    finally:
        node.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def rabbitmq_service() -> Iterator[RabbitNode]:
    """The session's RabbitMQ node (started on first use, once)."""
    with rabbitmq_node() as node:
        yield node


@pytest.fixture()
def rabbitmq_vhost(rabbitmq_service: RabbitNode) -> Iterator[str]:
    """A virtual host of this test's own on the session node."""
    with rabbitmq_service.vhost() as name:
        yield name
