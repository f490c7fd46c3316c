"""PARCELHOOK_ENCRYPTION_KEYS: Fernet keys, newest first; the first encrypts, every one decrypts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from config import Settings, SettingsError
from store.vault import SecretUnreadable, Vault, generate_key

ROOT = Path(__file__).resolve().parents[2]


def test_keys_come_newest_first_from_the_variable_or_from_var(tmp_path: Path) -> None:
    a, b = generate_key(), generate_key()
    settings = Settings.from_env(
        {"PARCELHOOK_VAR_DIR": str(tmp_path), "PARCELHOOK_ENCRYPTION_KEYS": f"{b}, {a}"}
    )
    assert settings.encryption_keys == (b, a)
    (tmp_path / "encryption-key").write_text(a + "\n")
    assert Settings.from_env({"PARCELHOOK_VAR_DIR": str(tmp_path)}).encryption_keys == (a,)


@pytest.mark.parametrize("raw", ["not-a-key", "a" * 44, f"{generate_key()},", generate_key()[:-2]])
def test_a_malformed_key_names_the_variable_but_never_echoes_the_key(raw: str) -> None:
    with pytest.raises(SettingsError, match="PARCELHOOK_ENCRYPTION_KEYS") as raised:
        Settings.from_env({"PARCELHOOK_VAR_DIR": "/nonexistent", "PARCELHOOK_ENCRYPTION_KEYS": raw})
    assert all(part not in str(raised.value) for part in raw.split(",") if part)


def test_the_processes_that_handle_merchant_secrets_need_a_key(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PARCELHOOK_ENCRYPTION_KEYS"):
        Settings.from_env({"PARCELHOOK_VAR_DIR": str(tmp_path)}, require_encryption_keys=True)
    with pytest.raises(SettingsError, match="PARCELHOOK_ENCRYPTION_KEYS"):
        _ = Settings.from_env({"PARCELHOOK_VAR_DIR": str(tmp_path)}).vault


@pytest.mark.parametrize("entry_point", ["ingest.wsgi", "admin.wsgi"])
def test_web_and_admin_stop_at_start_with_one_line_naming_it(tmp_path: Path, entry_point: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {entry_point}"],
        env={
            "PARCELHOOK_VAR_DIR": str(tmp_path),
            "PARCELHOOK_ADMIN_TOKEN": "a" * 24,
            "PARCELHOOK_SIGNING_KEY": "s" * 24,
            "PATH": "/usr/bin",
        },
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PARCELHOOK_ENCRYPTION_KEYS" in lines[0]


def test_keys_stay_out_of_the_repr() -> None:
    key = generate_key()
    settings = Settings.from_env({"PARCELHOOK_VAR_DIR": "/x", "PARCELHOOK_ENCRYPTION_KEYS": key})
    assert key not in repr(settings) and key not in repr(settings.vault)


def test_the_first_key_encrypts_and_every_key_decrypts() -> None:
    old, new = generate_key(), generate_key()
    under_old = Vault([old]).encrypt("hmac secret")
    both = Vault([new, old])
    assert both.decrypt(under_old) == "hmac secret"
    under_new = both.encrypt("hmac secret")
    assert Vault([new]).decrypt(under_new) == "hmac secret"
    with pytest.raises(SecretUnreadable):
        Vault([old]).decrypt(under_new)
    assert Vault([new]).decrypt(both.reencrypt(under_old)) == "hmac secret"
