from __future__ import annotations

from pathlib import Path

import pytest

from idgate.adapters.store import parse_url
from idgate.domain import ConfigurationError
from idgate.entrypoints.settings import INIT_TEMPLATE, env_overrides, load_settings


def test_defaults_need_no_file() -> None:
    settings = load_settings(None, {})
    assert settings.database.url == "sqlite+aiosqlite:///.idgate/idgate.db"
    assert settings.verification.require_prepare is True
    assert settings.policies.enabled == ["age_limit", "duplicate_identity"]
    assert settings.policies.options == {}


def test_environment_overrides_the_file_and_converts_types(tmp_path: Path) -> None:
    path = tmp_path / "idgate.toml"
    path.write_text('[portone]\nurl = "https://file.example"\nread_timeout = 5.0\n')
    settings = load_settings(
        path,
        {
            "IDGATE_PORTONE_URL": "http://127.0.0.1:8700",
            "IDGATE_VERIFICATION_REQUIRE_PREPARE": "false",
            "IDGATE_HTTP_CORS_ORIGINS": "https://a.example, https://b.example",
            "IDGATE_PORTONE_ATTEMPTS": "5",
        },
    )
    assert settings.portone.url == "http://127.0.0.1:8700"
    assert settings.portone.read_timeout == 5.0
    assert settings.portone.attempts == 5
    assert settings.verification.require_prepare is False
    assert settings.http.cors_origins == ["https://a.example", "https://b.example"]


def test_the_required_overrides_exist() -> None:
    names = set(env_overrides())
    assert {
        "IDGATE_DATABASE_URL",
        "IDGATE_PORTONE_URL",
        "IDGATE_PORTONE_IMP_KEY",
        "IDGATE_PORTONE_IMP_SECRET",
    } <= names


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('[portone]\nimp_kee = "x"\n', {}, "unknown key `imp_kee`"),
        ("[nonsense]\nx = 1\n", {}, "unknown key `nonsense`"),
        ('[portone]\nread_timeout = "slow"\n', {}, "Expected `float`"),
        ("[portone\n", {}, "not valid TOML"),
        ("", {"IDGATE_PORTONE_PORT": "1"}, "unknown environment variable IDGATE_PORTONE_PORT"),
        ("", {"IDGATE_PORTONE_ATTEMPTS": "many"}, "Expected `int`"),
        (
            "[retention]\nconsumed_certification_days = 0.01\n",  # 864 s: shorter than a certification lives
            {},
            "purged while PortOne's certification is still fresh",
        ),
        ("[http]\nprepare_rate_limit = -1\n", {}, "prepare_rate_limit must be 0"),
        ("[http]\nbody_timeout_seconds = 0\n", {}, "body_timeout_seconds must be more than 0"),
        ("", {"IDGATE_DATABASE_POOL_SIZE": "0"}, "pool_size must be 1 or more"),
    ],
)
def test_mistakes_are_named(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    path = tmp_path / "idgate.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_settings(path, env)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql+aiomysql://db/idgate", "idgate runs on SQLite and PostgreSQL"),
        ("postgresql+psycopg2://db/idgate", "idgate runs on SQLite and PostgreSQL"),
        ("sqlite+aiosqlite://", "must name a SQLite file"),
        ("sqlite+aiosqlite:///:memory:", "must name a SQLite file"),
        ("not a url", "not a valid SQLAlchemy URL"),
    ],
)
def test_database_urls_idgate_cannot_run_on_are_named(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_url(url)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@db/idgate", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@db/idgate", "postgresql+asyncpg"),
        ("sqlite:///x.db", "sqlite+aiosqlite"),
    ],
)
def test_database_urls_get_idgates_driver(url: str, driver: str) -> None:
    assert parse_url(url).drivername == driver


def test_secrets_stay_out_of_the_settings_repr() -> None:
    settings = load_settings(
        None, {"IDGATE_PORTONE_IMP_SECRET": "very-secret", "IDGATE_PORTONE_IMP_KEY": "k"}
    )
    assert "very-secret" not in repr(settings)


def test_what_init_writes_loads(tmp_path: Path) -> None:
    path = tmp_path / "idgate.toml"
    path.write_text(INIT_TEMPLATE)
    assert load_settings(path, {}).policies == load_settings(None, {}).policies


def test_options_for_one_policy_never_disable_another(tmp_path: Path) -> None:
    path = tmp_path / "idgate.toml"
    path.write_text("[policies.age_limit]\nmin_age = 20\n")
    policies = load_settings(path, {}).policies
    assert policies.enabled == ["age_limit", "duplicate_identity"]
    assert policies.options == {"age_limit": {"min_age": 20}}


def test_the_enabled_list_alone_decides(tmp_path: Path) -> None:
    path = tmp_path / "idgate.toml"
    path.write_text('[policies]\nenabled = ["age_limit"]\n[policies.age_limit]\nmin_age = 20\n')
    assert load_settings(path, {}).policies.enabled == ["age_limit"]
    assert load_settings(
        path, {"IDGATE_POLICIES_ENABLED": "duplicate_identity, age_limit"}
    ).policies.enabled == [
        "duplicate_identity",
        "age_limit",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[policies]\nenabled = ["age_limit"]\n[policies.duplicate_identity]\non_bound = "review"\n',
            "not enabled",
        ),
        ('[policies]\nenabled = ["age_limit", "age_limit"]\n', "more than once"),
        ("[policies]\nage_limit = 19\n", "must be a table of options"),
        ('[keyring]\ninline = "eyJ9"\n', "IDGATE_KEYRING"),
    ],
)
def test_policy_and_keyring_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "idgate.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError, match=message):
        load_settings(path, {})


def test_the_keyring_variable_is_read_through_the_settings() -> None:
    settings = load_settings(None, {"IDGATE_KEYRING": "c2VjcmV0LWtleXJpbmc="})
    assert settings.keyring.inline == "c2VjcmV0LWtleXJpbmc="
    assert "c2VjcmV0LWtleXJpbmc=" not in repr(settings)
    assert load_settings(None, {}).keyring.inline == ""
