"""``parcelhook queues|workers|dlq …`` against a broker that does not answer (a real closed
port): one line on stderr naming the broker, its password masked, exit code 1 -- on Redis and
on RabbitMQ alike, never a traceback. The real command, in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from admin.ops_cli import masked_url
from tests.support.services import free_port

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-pw"

COMMANDS = [
    ("queues",),
    ("dlq", "list"),
    ("dlq", "requeue", "--queue", "events", "--all"),
    ("dlq", "purge", "--queue", "events", "--all", "--yes"),
]


def parcelhook(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("PARCELHOOK_")}
    return subprocess.run(
        [sys.executable, "-m", "admin.cli", *argv],
        env={**keep, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert done.stderr.splitlines() == [expected], done.stderr[-2000:]
    assert PASSWORD not in done.stderr + done.stdout
    assert done.stdout == ""


@pytest.fixture()
def closed_port() -> int:
    return free_port()  # bound, then closed: nothing listens on it


@pytest.mark.parametrize("argv", [*COMMANDS, ("workers",)], ids=" ".join)
def test_an_unreachable_redis_broker_is_one_line_and_exit_1(
    tmp_path: Path, closed_port: int, argv: tuple[str, ...]
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{closed_port}/0"
    env = {"PARCELHOOK_BROKER_URL": url, "PARCELHOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'ph.db'}"}
    done = parcelhook(env, *argv)
    assert_one_line(
        done,
        f"parcelhook: Redis broker at redis://:***@127.0.0.1:{closed_port}/0 unreachable "
        f"(ConnectionError: Error 111 connecting to 127.0.0.1:{closed_port}. Connection refused.)",
    )


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_an_unreachable_rabbitmq_broker_is_one_line_and_exit_1(
    tmp_path: Path, redis_url: str, closed_port: int, argv: tuple[str, ...]
) -> None:
    url = f"amqp://parcelhook:{PASSWORD}@127.0.0.1:{closed_port}/prod"
    env = {
        "PARCELHOOK_BROKER_URL": url,
        "PARCELHOOK_REDIS_URL": redis_url,  # the state Redis answers; RabbitMQ does not
        "PARCELHOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'ph.db'}",
    }
    done = parcelhook(env, *argv)
    assert_one_line(
        done,
        f"parcelhook: RabbitMQ broker at amqp://parcelhook:***@127.0.0.1:{closed_port}/prod unreachable "
        "(RabbitMQ at 127.0.0.1 unreachable: AMQPConnectionError)"
        if argv == ("queues",)
        else f"parcelhook: RabbitMQ broker at amqp://parcelhook:***@127.0.0.1:{closed_port}/prod unreachable "
        "(RabbitMQ unreachable: AMQPConnectionError)",
    )


def test_an_unreachable_management_api_names_the_broker_and_the_api(
    tmp_path: Path, redis_url: str, closed_port: int
) -> None:
    env = {
        "PARCELHOOK_BROKER_URL": f"amqp://parcelhook:{PASSWORD}@127.0.0.1:{free_port()}/prod",
        "PARCELHOOK_RABBITMQ_MANAGEMENT_URL": f"http://parcelhook:{PASSWORD}@127.0.0.1:{closed_port}",
        "PARCELHOOK_REDIS_URL": redis_url,
        "PARCELHOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'ph.db'}",
    }
    done = parcelhook(env, "queues")
    [line] = done.stderr.splitlines()
    assert line.startswith("parcelhook: RabbitMQ broker at amqp://parcelhook:***@127.0.0.1:"), line
    assert line.endswith(
        f"unreachable (RabbitMQ management API at http://127.0.0.1:{closed_port} unreachable: URLError)"
    ), line
    assert_one_line(done, line)


def test_an_unreachable_state_redis_beside_rabbitmq_is_named_as_such(
    tmp_path: Path, closed_port: int
) -> None:
    env = {
        "PARCELHOOK_BROKER_URL": f"amqp://parcelhook:{PASSWORD}@127.0.0.1:{free_port()}/prod",
        "PARCELHOOK_REDIS_URL": f"redis://ops:{PASSWORD}@127.0.0.1:{closed_port}/2",
        "PARCELHOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'ph.db'}",
    }
    done = parcelhook(env, "workers")  # on RabbitMQ, the workers' heartbeats are in the state Redis
    assert_one_line(
        done,
        f"parcelhook: state Redis at redis://ops:***@127.0.0.1:{closed_port}/2 unreachable "
        f"(ConnectionError: Error 111 connecting to 127.0.0.1:{closed_port}. Connection refused.)",
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://u:p%40ss@h:5672/%2F", "amqp://u:***@h:5672/%2F"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("amqp://guest@h/", "amqp://guest@h/"),
        ("http://a:b@c@h:1/x", "http://a:***@h:1/x"),
    ],
)
def test_masked_url_hides_only_the_password(url: str, shown: str) -> None:
    assert masked_url(url) == shown
