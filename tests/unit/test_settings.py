"""Settings: one typed model, read once, with errors that name the variable."""

from __future__ import annotations

import pytest

from reportgrid.errors import SettingsError
from reportgrid.resources import ENV, TABLE_NAME
from reportgrid.settings import load_settings

GOOD = {ENV.REGION: "eu-west-1", ENV.ID_SECRETS: "a" * 16 + ", " + "b" * 24}


def test_defaults_come_from_resources() -> None:
    settings = load_settings(GOOD)
    assert settings.table_name == TABLE_NAME
    assert settings.region == "eu-west-1"
    assert [s.get_secret_value() for s in settings.id_secrets] == ["a" * 16, "b" * 24]
    rid = settings.id_codec().new("t", "eu-west-1")
    assert settings.id_codec().verify("t", rid.value) == rid


def test_settings_are_frozen() -> None:
    settings = load_settings(GOOD)
    with pytest.raises(Exception, match="frozen"):
        settings.region = "us-east-1"  # type: ignore[misc]


def test_secrets_never_print() -> None:
    assert "aaaa" not in repr(load_settings(GOOD))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({ENV.ID_SECRETS: "a" * 16}, f"{ENV.REGION}: is required but not set"),
        ({ENV.REGION: "eu-west-1"}, f"{ENV.ID_SECRETS}: is required but not set"),
        ({**GOOD, ENV.REGION: "mars-1"}, f"{ENV.REGION}: region 'mars-1' has no report id"),
        ({**GOOD, ENV.ID_SECRETS: "short"}, "at least 16 characters"),
        ({**GOOD, ENV.ID_SECRETS: " , "}, "give at least one secret"),
        ({**GOOD, ENV.EDGE_PORT: "http"}, f"{ENV.EDGE_PORT}: Input should be a valid integer"),
        ({**GOOD, ENV.EDGE_PORT: "70000"}, f"{ENV.EDGE_PORT}: Input should be less than"),
        ({**GOOD, ENV.DRAIN_GRACE_SECONDS: "45"}, ENV.DRAIN_GRACE_SECONDS),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert message in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({ENV.EDGE_PORT: "-1"})
    text = str(caught.value)
    assert ENV.REGION in text
    assert ENV.ID_SECRETS in text
    assert ENV.EDGE_PORT in text


def test_unrelated_variables_are_ignored() -> None:
    settings = load_settings({**GOOD, "HOME": "/root", "REPORTGRID_NOPE": "1"})
    assert settings.region == "eu-west-1"
