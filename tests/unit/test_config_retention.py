"""The retention settings: whole days, 1..36500, defaults 30 (webhook bodies) and 90 (messages);
anything else stops the process at start with one line naming the variable."""

from __future__ import annotations

import pytest

from config import Settings, SettingsError, load_or_exit

VARIABLES = ("PARCELHOOK_RETAIN_BODIES_DAYS", "PARCELHOOK_RETAIN_MESSAGES_DAYS")


def test_the_defaults_are_30_and_90_days() -> None:
    settings = Settings.from_env({})
    assert (settings.retain_bodies_days, settings.retain_messages_days) == (30, 90)


@pytest.mark.parametrize("variable", VARIABLES)
def test_a_whole_number_of_days_is_taken(variable: str) -> None:
    settings = Settings.from_env({variable: "7"})
    assert getattr(settings, variable.removeprefix("PARCELHOOK_").lower()) == 7
    assert (
        getattr(Settings.from_env({variable: "36500"}), variable.removeprefix("PARCELHOOK_").lower()) == 36500
    )


@pytest.mark.parametrize("variable", VARIABLES)
@pytest.mark.parametrize("raw", ["0", "-1", "1.5", "abc", " 7", "7\n", "1_0", "٣", "36501", "99999999999"])
def test_anything_else_stops_the_process_with_one_line_naming_the_variable(
    variable: str, raw: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: raw})
    monkeypatch.setenv(variable, raw)
    with pytest.raises(SystemExit) as stopped:
        load_or_exit()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and variable in err
