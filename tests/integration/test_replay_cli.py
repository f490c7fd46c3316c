"""``parcelhook replay FILE…`` against a real receiver on a real socket, signed for an HMAC merchant."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from admin.cli import main
from tests.fixtures.shippo import HERE
from tests.integration.conftest import System, hmac_secret

pytestmark = pytest.mark.redis

SCENARIO = str(HERE / "scenario-delivered.jsonl")


@pytest.fixture()
def receiver(system: System, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from ingest.app import create_app

    monkeypatch.setenv("PARCELHOOK_DATABASE_URL", system.settings.database_url)
    monkeypatch.setenv("PARCELHOOK_BROKER_URL", system.settings.broker_url)
    monkeypatch.setenv("PARCELHOOK_ENCRYPTION_KEYS", ",".join(system.settings.encryption_keys))
    server = make_server("127.0.0.1", 0, create_app(system.settings, database=system.database), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)
    server.server_close()


def replay(*argv: str) -> tuple[int, dict[str, int]]:
    out = io.StringIO()
    code = main(["replay", *argv], out=out)
    counts: dict[str, int] = {}
    for line in out.getvalue().splitlines():
        count, outcome = line.split(None, 1)
        counts[outcome] = int(count)
    return code, counts


def test_replay_posts_signed_bodies_shuffled_with_duplicates(system: System, receiver: str) -> None:
    system.create_merchant(hmac_secrets=[hmac_secret()], order_ref_pattern=r"Order (\d+)")
    system.start_worker()
    code, counts = replay(SCENARIO, "--merchant", "acme", "--url", receiver, "--duplicates", "1", "--shuffle")
    assert code == 0
    assert counts == {"200 queued": 7, "200 duplicate": 7}
    system.drain()
    order = system.order("1001")
    assert (order["status"], order["exception"]) == ("delivered", None)
    [shipment] = order["shipments"]
    assert shipment["status"] == "delivered" and len(shipment["history"]) == 6

    code, counts = replay(SCENARIO, "--merchant", "acme", "--url", receiver)
    assert (code, counts) == (0, {"200 duplicate": 7}), "replaying again changes nothing"


def test_replay_with_a_wrong_secret_is_refused_and_exits_non_zero(system: System, receiver: str) -> None:
    system.create_merchant(hmac_secrets=[hmac_secret()])
    code, counts = replay(SCENARIO, "--merchant", "acme", "--url", receiver, "--secret", "w" * 32)
    assert code == 1
    [(outcome, count)] = counts.items()
    assert outcome.startswith("401") and count == 7


def test_replay_of_json_files_without_hmac(system: System, receiver: str) -> None:
    system.create_merchant()
    system.start_worker()
    files = [str(HERE / "transaction_created.json"), str(HERE / "batch_created.json")]
    code, counts = replay(*files, "--merchant", "acme", "--url", receiver)
    assert (code, counts) == (0, {"200 ignored": 1, "200 queued": 1})
    system.drain()


def test_replay_refuses_unknown_merchants_and_bad_urls(
    system: System, receiver: str, capsys: pytest.CaptureFixture[str]
) -> None:
    system.create_merchant()
    with pytest.raises(SystemExit, match="--url must be http"):
        replay(SCENARIO, "--merchant", "acme", "--url", "ftp://example.com")
    assert replay(SCENARIO, "--merchant", "ghost", "--url", receiver) == (1, {})
    assert "unknown merchant 'ghost'" in capsys.readouterr().err
