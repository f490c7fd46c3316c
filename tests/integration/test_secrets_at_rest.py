"""Merchant secrets at rest, on SQLite AND PostgreSQL: no webhook token or HMAC secret is ever
stored in clear, the receiver still tells right from wrong, keys rotate, old rows convert."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from admin.cli import main as cli
from config import Settings, SettingsError
from store import merchants as merchant_store
from store.database import Database, utcnow
from store.migrate import downgrade, upgrade
from store.vault import SecretsSealed, SecretUnreadable, Vault, generate_key, token_digest
from tests.fixtures.shippo import raw
from tests.integration.conftest import System, hmac_secret

pytestmark = pytest.mark.redis

BODY = raw("track_updated_transit.json")


def stored_bytes(db: Database) -> bytes:
    """Everything the database keeps about merchants, as bytes an attacker with the files would read:
    the SQLite file with its WAL and SHM files; on PostgreSQL every column of every row."""
    if db.is_sqlite:
        path = Path(sa.engine.make_url(db.url).database or "")
        files = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
        assert path in files
        return b"".join(p.read_bytes() for p in files)
    with db.read() as conn:
        rows = conn.exec_driver_sql("SELECT m::text FROM merchants m").scalars().all()
    return "\n".join(rows).encode()


def run_cli(monkeypatch: pytest.MonkeyPatch, db: Database, keys: str, *argv: str) -> tuple[int, str]:
    monkeypatch.setenv("PARCELHOOK_DATABASE_URL", db.url)
    monkeypatch.setenv("PARCELHOOK_ENCRYPTION_KEYS", keys)
    monkeypatch.setenv("PARCELHOOK_PUBLIC_URL", "https://hooks.example.com")
    out = io.StringIO()
    return cli(list(argv), out=out), out.getvalue()


# ---------------------------------------------------------------- nothing in clear


def test_no_token_or_hmac_secret_is_stored_in_clear(system: System, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = ",".join(system.settings.encryption_keys)
    secrets_ = [hmac_secret(), hmac_secret(), hmac_secret()]
    acme = system.create_merchant("acme", hmac_secrets=secrets_[:2])
    rotated = system.admin.post("/api/merchants/acme/rotate-token", headers=system.auth()).get_json()
    assert (
        run_cli(
            monkeypatch,
            system.database,
            keys,
            "merchants",
            "create",
            "beta",
            "--name",
            "Beta",
            "--hmac-secret",
            secrets_[2],
        )[0]
        == 0
    )
    with system.database.read() as conn:
        beta_token = merchant_store.require(conn, "beta", system.settings.vault).webhook_token
    code, out = run_cli(monkeypatch, system.database, keys, "merchants", "rotate-token", "beta")
    assert code == 0
    beta_rotated = out.split("token=")[1].split()[0]

    clear = [*secrets_, acme["webhook_token"], rotated["webhook_token"], beta_token, beta_rotated]
    assert len(set(clear)) == len(clear)
    dump = stored_bytes(system.database)
    assert b"beta" in dump and token_digest(beta_rotated).encode() in dump, "the dump holds the merchants"
    assert [s for s in clear if s.encode() in dump] == []
    # …and every one of them still works: both current tokens, the previous ones for 24 h
    for merchant, token, secret in (
        (rotated, acme["webhook_token"], secrets_[1]),
        (rotated, rotated["webhook_token"], secrets_[0]),
        ({"slug": "beta"}, beta_token, secrets_[2]),
        ({"slug": "beta"}, beta_rotated, secrets_[2]),
    ):
        assert system.post(merchant, BODY, token=token, secret=secret).status_code == 200


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    secret=st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=16, max_size=64
    )
)
def test_any_hmac_secret_is_stored_encrypted_and_still_verifies(
    make_system: Callable[..., System], sqlite_url: str, secret: str
) -> None:
    system, before = _shared(make_system, sqlite_url)
    slug = f"m{len(_SLUGS)}"  # a new merchant per example: the receiver's cache never holds an older one
    _SLUGS.append(slug)
    assume(secret.encode() not in before)  # e.g. an index name: in the file before any merchant was written
    response = system.admin.put(
        f"/api/merchants/{slug}", json={"name": "Acme", "hmac_secrets": [secret]}, headers=system.auth()
    )
    assert response.status_code == 201, response.get_json()
    merchant = response.get_json()
    assert secret.encode() not in stored_bytes(system.database)
    assert system.post(merchant, BODY, secret=secret).status_code == 200
    assert system.post(merchant, BODY, secret=secret + "x").status_code == 401


_SYSTEMS: dict[int, tuple[System, bytes]] = {}
_SLUGS: list[str] = []


def _shared(make_system: Callable[..., System], url: str) -> tuple[System, bytes]:
    """One system for all the examples of one test run (its fixtures are built once per test, not per
    example), and its database file as it was before any merchant."""
    if id(make_system) not in _SYSTEMS:
        _SYSTEMS.clear()
        system = make_system(url)
        _SYSTEMS[id(make_system)] = (system, stored_bytes(system.database))
    return _SYSTEMS[id(make_system)]


# ---------------------------------------------------------------- the receiver, right and wrong


def test_the_receiver_accepts_the_right_token_and_secret_and_refuses_wrong_ones(system: System) -> None:
    secret, other = hmac_secret(), hmac_secret()
    merchant = system.create_merchant("acme", hmac_secrets=[secret])
    assert system.post(merchant, BODY, secret=secret).status_code == 200
    token = merchant["webhook_token"]
    one_off = token[:-1] + ("B" if token.endswith("A") else "A")
    wrong_token = system.post(merchant, BODY, secret=secret, token=one_off)
    assert (wrong_token.status_code, wrong_token.get_json()["error"]) == (401, "bad_token")
    assert (
        system.post(merchant, BODY, secret=secret, token=token_digest(merchant["webhook_token"])).status_code
        == 401
    )
    wrong_secret = system.post(merchant, BODY, secret=other)
    assert (wrong_secret.status_code, wrong_secret.get_json()["error"]) == (401, "bad_signature")
    assert system.post(merchant, BODY).status_code == 401  # no signature at all


def test_tokens_are_checked_by_digest_without_any_key(database: Database) -> None:
    vault = Vault([generate_key()])
    with database.write() as conn:
        created, _ = merchant_store.upsert(
            conn, "acme", vault=vault, name="Acme", profile={}, hmac_secrets=["h" * 24]
        )
        now = utcnow()
        merchant_store.rotate_token(conn, "acme", vault=vault, now=now)
    with database.read() as conn:
        sealed = merchant_store.require(conn, "acme")  # loaded without a vault, like a worker does
    assert sealed.accepts_token(created.webhook_token, now + timedelta(hours=23))
    assert not sealed.accepts_token(created.webhook_token, now + timedelta(hours=25))
    assert not sealed.accepts_token("h" * 24, now)
    with pytest.raises(SecretsSealed):
        _ = sealed.hmac_secrets
    with pytest.raises(SecretsSealed):
        _ = sealed.webhook_token
    assert sealed.hmac_secret_count == 1
    assert "h" * 24 not in repr(created) and created.webhook_token not in repr(created)


# ---------------------------------------------------------------- key rotation


def test_a_key_rotation_reencrypts_everything_under_the_new_key(
    make_system: Callable[..., System], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_a, key_b = generate_key(), generate_key()
    before = make_system(database_url, encryption_keys=(key_a,))
    secret = hmac_secret()
    merchant = before.create_merchant("acme", hmac_secrets=[secret])
    db = before.database

    def load(keys: str) -> merchant_store.Merchant:
        with db.read() as conn:
            return merchant_store.require(conn, "acme", Vault(keys.split(",")))

    with pytest.raises(SecretUnreadable):
        _ = load(key_b).hmac_secrets
    assert load(f"{key_b},{key_a}").hmac_secrets == (secret,)  # step 2: B in front, A still decrypts

    code, out = run_cli(monkeypatch, db, f"{key_b},{key_a}", "secrets", "reencrypt")
    assert code == 0 and "1 merchant" in out

    after = load(key_b)  # step 4: A dropped
    assert (after.webhook_token, after.hmac_secrets) == (merchant["webhook_token"], (secret,))
    with pytest.raises(SecretUnreadable):
        _ = load(key_a).hmac_secrets
    receiver = make_system(database_url, encryption_keys=(key_b,))
    assert receiver.post(merchant, BODY, secret=secret).status_code == 200
    assert (
        receiver.admin.get("/api/merchants/acme", headers=receiver.auth()).get_json()["webhook_url"]
        == merchant["webhook_url"]
    )


def test_commands_that_touch_secrets_stop_without_a_key(
    database: Database, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PARCELHOOK_DATABASE_URL", database.url)
    monkeypatch.setenv("PARCELHOOK_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("PARCELHOOK_ENCRYPTION_KEYS", raising=False)
    for argv in (
        ["merchants", "create", "acme", "--name", "Acme"],
        ["merchants", "show", "acme"],
        ["secrets", "reencrypt"],
    ):
        with pytest.raises(SystemExit) as stopped:
            cli(argv, out=io.StringIO())
        assert stopped.value.code == 2
        assert "PARCELHOOK_ENCRYPTION_KEYS" in capsys.readouterr().err
    with pytest.raises(SettingsError, match="PARCELHOOK_ENCRYPTION_KEYS"):
        _ = Settings(database_url=database.url).vault


# ---------------------------------------------------------------- migration 0004


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    server = request.getfixturevalue("postgres_url")
    name = "m_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield server.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


PLAIN_TOKEN, OLD_TOKEN = "plain-token-" + "T" * 20, "old-token-" + "O" * 22
PLAIN_SECRETS = ["plain-secret-" + "S" * 16, "plain-secret-" + "R" * 16]


def _write_03_row(url: str) -> None:
    """A merchant as the 0003 schema stored it (plain), with a delivery pointing at it."""
    upgrade(url, "0003")
    db = Database(url)
    now = utcnow()
    with db.write() as conn:
        merchant_id = conn.execute(
            sa.text(
                "INSERT INTO merchants (slug, name, profile, webhook_token, previous_token, "
                "previous_token_expires_at, hmac_secrets, created_at, updated_at) VALUES ('acme', 'Acme', "
                "'{}', :token, :old, :until, :secrets, :now, :now) RETURNING id"
            ),
            {
                "token": PLAIN_TOKEN,
                "old": OLD_TOKEN,
                "until": now + timedelta(hours=12),
                "secrets": f'["{PLAIN_SECRETS[0]}", "{PLAIN_SECRETS[1]}"]',
                "now": now,
            },
        ).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO deliveries (merchant_id, event_id, event, received_at, processed_at, "
                "outcome, body) VALUES (:m, 'e1', 'track_updated', :now, :now, 'processed', '{}')"
            ),
            {"m": merchant_id, "now": now},
        )
    db.dispose()


def _version(db: Database) -> str:
    with db.read() as conn:
        return str(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one())


def test_the_migration_converts_plain_rows_of_the_0003_schema(empty_database: str) -> None:
    _write_03_row(empty_database)
    db = Database(empty_database)
    try:
        assert PLAIN_TOKEN.encode() in stored_bytes(db)  # the test sees plain values when they are there

        with pytest.raises(SettingsError, match="PARCELHOOK_ENCRYPTION_KEYS"):
            upgrade(empty_database)  # existing secrets, no key: refused, nothing half-done
        db.dispose()
        assert _version(db) == "0003"

        vault = Vault([generate_key()])
        db.dispose()
        upgrade(empty_database, "0004", vault=vault)
        assert _version(db) == "0004"
        dump = stored_bytes(db)
        assert [s for s in (PLAIN_TOKEN, OLD_TOKEN, *PLAIN_SECRETS) if s.encode() in dump] == []
        db.dispose()
        upgrade(empty_database)  # on to head (0005 adds nullable columns only), for today's store code
        with db.read() as conn:
            merchant = merchant_store.require(conn, "acme", vault)
        assert merchant.webhook_token == PLAIN_TOKEN and merchant.hmac_secrets == tuple(PLAIN_SECRETS)
        now = utcnow()
        assert merchant.accepts_token(PLAIN_TOKEN, now) and merchant.accepts_token(OLD_TOKEN, now)
        assert not merchant.accepts_token(OLD_TOKEN, now + timedelta(hours=13))

        db.dispose()
        downgrade(empty_database, "0003", vault=vault)  # and back, for a release rolled back
        with db.read() as conn:
            row = conn.execute(sa.text("SELECT webhook_token, hmac_secrets FROM merchants")).one()
        assert row.webhook_token == PLAIN_TOKEN
    finally:
        db.dispose()
