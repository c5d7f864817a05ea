"""Settings: embedded defaults, file < environment < overrides, clear errors, production secrets required."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import load_settings, with_generated_secrets


def test_embedded_defaults_need_nothing() -> None:
    s = load_settings({})
    assert s.env == "development" and (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.effective_database_url.startswith("sqlite+aiosqlite:///") and s.redis_url == ""
    assert "http://127.0.0.1:8080" in s.effective_allowed_origins


def test_precedence_file_then_environment_then_overrides(tmp_path: Path) -> None:
    file = tmp_path / "settings.toml"
    file.write_text('port = 9001\nredis_url = "redis://file"\nallowed_origins = ["https://a.example"]\n')
    env = {"THERAPY_SETTINGS_FILE": str(file), "REDIS_URL": "redis://env", "DATABASE_URL": "postgresql+asyncpg://db/x"}
    s = load_settings(env, overrides={"port": 9002})
    assert s.port == 9002 and s.redis_url == "redis://env" and s.allowed_origins == ("https://a.example",)
    assert s.effective_database_url == "postgresql+asyncpg://db/x"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"THERAPY_PORT": "eighty"}, "THERAPY_PORT"),
        ({"THERAPY_PORT": "70000"}, "THERAPY_PORT"),
        ({"THERAPY_ENV": "staging"}, "THERAPY_ENV"),
        ({"THERAPY_MIGRATE_ON_START": "maybe"}, "THERAPY_MIGRATE_ON_START"),
        ({"THERAPY_ALLOWED_ORIGINS": "*"}, "THERAPY_ALLOWED_ORIGINS"),
        ({"THERAPY_TRUSTED_PROXIES": "not-an-ip"}, "THERAPY_TRUSTED_PROXIES"),
        ({"THERAPY_TOKEN_TTL_S": "60"}, "THERAPY_TOKEN_TTL_S"),
        ({"THERAPY_TOKEN_MAX_LIFETIME_S": "7200"}, "THERAPY_TOKEN_MAX_LIFETIME_S"),
        ({"THERAPY_EMAIL_REQUESTS_PER_ADDRESS": "0"}, "THERAPY_EMAIL_REQUESTS_PER_ACCOUNT"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings(env)


def test_unknown_or_broken_settings_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown settings"):
        load_settings({"THERAPY_SETTINGS_FILE": str(bad)})
    bad.write_text("port = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings({"THERAPY_SETTINGS_FILE": str(bad)})
    with pytest.raises(ConfigError, match="not found"):
        load_settings({"THERAPY_SETTINGS_FILE": str(tmp_path / "missing.toml")})


def test_production_refuses_to_start_without_its_secrets() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"THERAPY_ENV": "production"})
    for name in ("THERAPY_SECRET_KEY", "THERAPY_ENCRYPTION_KEYS", "THERAPY_METRICS_TOKEN", "THERAPY_PUBLIC_URL"):
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="at least 32"):
        load_settings({"THERAPY_ENV": "production", "THERAPY_SECRET_KEY": "short", "THERAPY_ENCRYPTION_KEYS": "k1:x",
                       "THERAPY_METRICS_TOKEN": "m", "THERAPY_PUBLIC_URL": "https://therapy.example"})


PRODUCTION = {
    "THERAPY_ENV": "production", "THERAPY_SECRET_KEY": "p" * 40, "THERAPY_ENCRYPTION_KEYS": "k1:x",
    "THERAPY_METRICS_TOKEN": "m", "THERAPY_PUBLIC_URL": "https://therapy.example", "THERAPY_EMAIL_BACKEND": "smtp",
}


def test_production_migrates_from_the_command_line_unless_told_otherwise() -> None:
    assert load_settings({}).migrate_on_start is True, "the embedded mode migrates on start"
    assert load_settings(PRODUCTION).migrate_on_start is False
    assert load_settings({**PRODUCTION, "THERAPY_MIGRATE_ON_START": "true"}).migrate_on_start is True
    assert load_settings({}, overrides={**{k.removeprefix("THERAPY_").lower(): v for k, v in PRODUCTION.items()},
                                        "migrate_on_start": True}).migrate_on_start is True


def test_production_refuses_to_deliver_mail_to_the_log() -> None:
    with pytest.raises(ConfigError, match="THERAPY_EMAIL_BACKEND=log"):
        load_settings({**PRODUCTION, "THERAPY_EMAIL_BACKEND": "log"})
    with pytest.raises(ConfigError, match="THERAPY_EMAIL_BACKEND"):  # log is the default
        load_settings({k: v for k, v in PRODUCTION.items() if k != "THERAPY_EMAIL_BACKEND"})
    assert load_settings({**PRODUCTION, "THERAPY_ENV": "development", "THERAPY_EMAIL_BACKEND": "log"}).email_backend == "log"


def test_development_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    s = load_settings({"THERAPY_DATA_DIR": str(tmp_path)})
    first = with_generated_secrets(s)
    second = with_generated_secrets(s)
    assert first.secret_key and first.encryption_keys
    assert (first.secret_key, first.encryption_keys) == (second.secret_key, second.encryption_keys)
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600


def test_redacted_settings_hide_secrets() -> None:
    s = load_settings({"THERAPY_SECRET_KEY": "s3cret-value", "DATABASE_URL": "postgresql+asyncpg://u:pw@h/db"})
    shown = str(s.redacted())
    assert "s3cret-value" not in shown and ":pw@" not in shown
