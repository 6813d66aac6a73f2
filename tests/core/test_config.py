from pathlib import Path

import pytest

from communication_agent.core.config import (
    MIN_SECRET_KEY_LENGTH,
    ConfigurationError,
    Settings,
    normalise_database_url,
)

POSTGRES = "postgresql://app:pw-not-shown@db.internal:5432/support"


def test_default_database_is_a_sqlite_file_in_the_data_directory(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert settings.is_sqlite
    assert settings.database.drivername == "sqlite+aiosqlite"
    assert settings.database.database == str((tmp_path / "commagent.db").resolve())
    assert settings.should_auto_migrate


def test_environment_variables_use_the_commagent_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COMMAGENT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COMMAGENT_DATABASE_URL", POSTGRES)
    settings = Settings(_env_file=None)
    assert settings.data_dir == tmp_path
    assert settings.database.drivername == "postgresql+asyncpg"
    assert not settings.should_auto_migrate


@pytest.mark.parametrize(
    ("raw", "driver"),
    [
        ("postgres://u:p@h/d", "postgresql+asyncpg"),
        ("postgresql://u:p@h/d", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u:p@h/d", "postgresql+asyncpg"),
        ("sqlite:///x.db", "sqlite+aiosqlite"),
    ],
)
def test_pasted_database_urls_are_made_async(raw: str, driver: str) -> None:
    assert normalise_database_url(raw).drivername == driver


@pytest.mark.parametrize("raw", ["mysql://u:p@h/d", "not a url at all"])
def test_unsupported_database_urls_are_refused_with_a_clear_message(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="COMMAGENT_DATABASE_URL"):
        normalise_database_url(raw)


def test_embedded_default_generates_and_then_reuses_a_secret_key(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    key, generated = settings.resolved_secret_key()
    assert generated
    assert len(key.get_secret_value()) >= MIN_SECRET_KEY_LENGTH
    key_file = tmp_path / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    again, generated_again = Settings(_env_file=None, data_dir=tmp_path).resolved_secret_key()
    assert not generated_again
    assert again.get_secret_value() == key.get_secret_value()


def test_postgres_without_a_secret_key_refuses_to_start(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=POSTGRES)
    with pytest.raises(ConfigurationError, match="COMMAGENT_SECRET_KEY is not set"):
        settings.resolved_secret_key()
    assert not (tmp_path / "secret_key").exists()


def test_a_short_secret_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, secret_key="tooshort-s3cret")
    with pytest.raises(ConfigurationError, match="too short") as info:
        settings.resolved_secret_key()
    assert "tooshort-s3cret" not in str(info.value)


def test_secrets_do_not_appear_in_the_settings_repr_or_display_url(tmp_path: Path) -> None:
    secret = "x" * 40
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=POSTGRES, secret_key=secret)
    assert secret not in repr(settings)
    assert secret not in str(settings.model_dump())
    assert "pw-not-shown" not in settings.database_display
    assert "***" in settings.database_display
