"""``parcelhook merchants create|list|show|rotate-token`` on each database (env read by load_or_exit)."""

from __future__ import annotations

import io
import json

import pytest

from admin.cli import main
from store import merchants as merchant_store
from store.database import Database
from tests.integration.conftest import ENCRYPTION_KEY, VAULT


@pytest.fixture()
def cli_env(monkeypatch: pytest.MonkeyPatch, database: Database) -> Database:
    monkeypatch.setenv("PARCELHOOK_DATABASE_URL", database.url)
    monkeypatch.setenv("PARCELHOOK_ADMIN_TOKEN", "cli-test-token-" + "x" * 16)
    monkeypatch.setenv("PARCELHOOK_PUBLIC_URL", "https://hooks.example.com")
    monkeypatch.setenv("PARCELHOOK_ENCRYPTION_KEYS", ENCRYPTION_KEY)
    return database


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_create_list_show_and_rotate(cli_env: Database, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(
        "merchants",
        "create",
        "acme",
        "--name",
        "Acme Inc",
        "--email-from",
        "shop@acme.example",
        "--sms-from",
        "+14155550100",
        "--hmac-secret",
        "s" * 32,
        "--timezone",
        "Europe/Paris",
    )
    assert code == 0, capsys.readouterr().err
    with cli_env.read() as conn:
        merchant = merchant_store.require(conn, "acme", VAULT)
    assert f"https://hooks.example.com/webhooks/shippo/acme?token={merchant.webhook_token}" in out
    assert "HMAC" in out and "s" * 32 not in out
    assert (merchant.email_from, merchant.timezone, merchant.hmac_secrets) == (
        "shop@acme.example",
        "Europe/Paris",
        ("s" * 32,),
    )

    assert run("merchants", "create", "beta", "--name", "Beta")[0] == 0
    code, out = run("merchants", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["SLUG", "NAME", "HMAC"]
    assert [line.split()[0] for line in lines[1:]] == ["acme", "beta"]
    assert lines[1].split()[-1] == "yes" and lines[2].split()[-1] == "no"
    code, out = run("merchants", "list", "--json")
    assert [m["slug"] for m in json.loads(out)] == ["acme", "beta"] and "s" * 32 not in out

    code, out = run("merchants", "show", "acme")
    shown = json.loads(out)
    assert code == 0 and shown["webhook_token"] == merchant.webhook_token and "hmac_secrets" not in shown

    code, out = run("merchants", "rotate-token", "acme")
    with cli_env.read() as conn:
        rotated = merchant_store.require(conn, "acme", VAULT)
    assert code == 0 and rotated.webhook_token in out and "24 hours" in out
    assert rotated.previous_token_digest == merchant.token_digest


def test_cli_errors_name_the_problem(cli_env: Database, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("merchants", "create", "Bad_Slug", "--name", "x")[0] == 2
    assert "slug" in capsys.readouterr().err
    assert run("merchants", "create", "acme", "--name", "x", "--timezone", "Mars/Olympus")[0] == 2
    assert "--timezone" in capsys.readouterr().err
    assert run("merchants", "create", "acme", "--name", "x", "--hmac-secret", "short")[0] == 2
    assert "--hmac-secret" in capsys.readouterr().err
    assert run("merchants", "create", "acme", "--name", "Acme")[0] == 0
    assert run("merchants", "create", "acme", "--name", "Acme 2")[0] == 1
    assert "--update" in capsys.readouterr().err
    assert run("merchants", "create", "acme", "--name", "Acme 2", "--update")[0] == 0
    with cli_env.read() as conn:
        assert merchant_store.require(conn, "acme").name == "Acme 2"
    assert run("merchants", "show", "ghost")[0] == 1
    assert "ghost" in capsys.readouterr().err
    assert run("merchants", "rotate-token", "ghost")[0] == 1
