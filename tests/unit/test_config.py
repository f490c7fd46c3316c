"""Settings: one frozen object from the environment; bad values name the variable."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from config import Settings, SettingsError


def test_defaults_match_the_contract() -> None:
    s = Settings.from_env({"PARCELHOOK_VAR_DIR": "/nonexistent"})
    assert s.max_body_bytes == 1_048_576
    assert s.signature_tolerance_s == 300
    assert s.stall_after_h == 96
    assert s.public_url == "http://127.0.0.1:8000"
    assert s.smtp_url is None and not s.twilio_enabled
    assert (s.web_port, s.admin_port) == (8000, 8001)
    assert Settings().database_url == "sqlite:///var/parcelhook.db"


def test_settings_are_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        Settings().max_body_bytes = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PARCELHOOK_MAX_BODY_BYTES": "lots"}, "PARCELHOOK_MAX_BODY_BYTES"),
        ({"PARCELHOOK_MAX_BODY_BYTES": "-5"}, "PARCELHOOK_MAX_BODY_BYTES"),
        ({"PARCELHOOK_DATABASE_URL": "mysql://x"}, "PARCELHOOK_DATABASE_URL"),
        ({"PARCELHOOK_BROKER_URL": "kafka://x"}, "PARCELHOOK_BROKER_URL"),
        ({"PARCELHOOK_SMTP_URL": "http://mail"}, "PARCELHOOK_SMTP_URL"),
        ({"PARCELHOOK_TWILIO_ACCOUNT_SID": "AC123"}, "PARCELHOOK_TWILIO_AUTH_TOKEN"),
        ({"PARCELHOOK_STALL_AFTER_H": "1.5"}, "PARCELHOOK_STALL_AFTER_H"),
    ],
)
def test_a_malformed_value_names_its_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env({"PARCELHOOK_VAR_DIR": "/nonexistent", **env})


def test_a_missing_admin_token_is_an_error_where_it_is_required(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PARCELHOOK_ADMIN_TOKEN"):
        Settings.from_env({"PARCELHOOK_VAR_DIR": str(tmp_path)}, require_admin_token=True)
    (tmp_path / "admin-token").write_text("from-file\n")
    assert Settings.from_env({"PARCELHOOK_VAR_DIR": str(tmp_path)}).admin_token == "from-file"


def test_secrets_are_not_in_the_repr() -> None:
    s = Settings.from_env(
        {
            "PARCELHOOK_VAR_DIR": "/x",
            "PARCELHOOK_ADMIN_TOKEN": "sekrit-admin",
            "PARCELHOOK_SMTP_URL": "smtp://u:sekrit-mail@h:25",
            "PARCELHOOK_TWILIO_ACCOUNT_SID": "AC1",
            "PARCELHOOK_TWILIO_AUTH_TOKEN": "sekrit-twilio",
        }
    )
    assert "sekrit" not in repr(s)


def test_a_process_stops_at_start_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import config; config.load_or_exit()"],
        env={
            "PARCELHOOK_SIGNATURE_TOLERANCE_S": "soon",
            "PARCELHOOK_VAR_DIR": str(tmp_path),
            "PATH": "/usr/bin",
        },
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "PARCELHOOK_SIGNATURE_TOLERANCE_S" in lines[0]


def test_web_and_workers_need_their_own_signing_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PARCELHOOK_SIGNING_KEY"):
        Settings.from_env(
            {"PARCELHOOK_VAR_DIR": str(tmp_path), "PARCELHOOK_ADMIN_TOKEN": "admin"}, require_signing_key=True
        )
    (tmp_path / "signing-key").write_text("from-file\n")
    settings = Settings.from_env({"PARCELHOOK_VAR_DIR": str(tmp_path)}, require_signing_key=True)
    assert settings.signing_key == "from-file"
    other = Settings.from_env({"PARCELHOOK_VAR_DIR": str(tmp_path), "PARCELHOOK_ADMIN_TOKEN": "rotated"})
    assert other.unsubscribe_key == settings.unsubscribe_key, "rotating the admin token breaks no mailed link"


def test_rabbitmq_needs_a_redis_for_state_and_redis_brokers_double_as_it() -> None:
    with pytest.raises(SettingsError, match="PARCELHOOK_REDIS_URL"):
        Settings.from_env(
            {"PARCELHOOK_VAR_DIR": "/x", "PARCELHOOK_BROKER_URL": "amqp://guest:guest@mq:5672/"}
        )
    amqp = Settings.from_env(
        {
            "PARCELHOOK_VAR_DIR": "/x",
            "PARCELHOOK_BROKER_URL": "amqp://mq/",
            "PARCELHOOK_REDIS_URL": "redis://state:6379/2",
        }
    )
    assert amqp.state_redis_url == "redis://state:6379/2"
    assert Settings.from_env({"PARCELHOOK_VAR_DIR": "/x"}).state_redis_url == "redis://127.0.0.1:6390/0"


def test_urls_with_passwords_stay_out_of_the_repr() -> None:
    s = Settings.from_env(
        {
            "PARCELHOOK_VAR_DIR": "/x",
            "PARCELHOOK_DATABASE_URL": "postgresql+psycopg://app:db-sekrit@db/parcelhook",
            "PARCELHOOK_BROKER_URL": "redis://:redis-sekrit@cache:6379/0",
        }
    )
    assert "sekrit" not in repr(s)
