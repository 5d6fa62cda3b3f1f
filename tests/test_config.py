"""Configuration precedence, validation and paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import load_config, resolve_paths
from daemon.errors import ConfigError


def test_defaults_without_file(home: Path) -> None:
    cfg = load_config(env={"AIGOV_HOME": str(home)})
    assert cfg.port == 8080 and cfg.host == "127.0.0.1" and cfg.log_inputs == "redacted"
    assert cfg.db_file == home / "aigov.db" and cfg.policy_path == home / "policy.toml"


def test_precedence_flag_env_file_default(home: Path) -> None:
    (home / "config.toml").write_text("port = 9000\nlog_batch_size = 7\nhost = '127.0.0.2'\n")
    env = {"AIGOV_HOME": str(home), "AIGOV_PORT": "9100", "AIGOV_LOG_BATCH_SIZE": "8"}
    cfg = load_config({"port": 9200}, env=env)
    assert cfg.port == 9200  # flag
    assert cfg.log_batch_size == 8  # env over file
    assert cfg.host == "127.0.0.2"  # file over default
    assert cfg.log_flush_interval == 5.0  # default


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("surprise_key = 1\n", "surprise_key"),
        ("port = 'eighty'\n", "port"),
        ("port = 99999\n", "port"),
        ("log_inputs = 'everything'\n", "log_inputs"),
        ("bcrypt_cost = 4\n", "bcrypt_cost"),
        ("default_rate_limit = 'fast'\n", "default_rate_limit"),
        ("port = [\n", "invalid TOML"),
    ],
)
def test_bad_config_names_the_key(home: Path, text: str, needle: str) -> None:
    (home / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(env={"AIGOV_HOME": str(home)})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# settings\nhost = '127.0.0.1'\nport = '8080'\n", ":3: port must be int, got str '8080'"),
        ("\n\nsurprise_key = 1\n", ":3: unknown key 'surprise_key' (known keys: "),
        ("log_level = 'info'\n'log_inputs' = 'everything'\n", ":2: log_inputs must be one of none, redacted, full"),
        ("# one\n# two\nport = = 1\n", ":3: invalid TOML: "),
    ],
)
def test_bad_config_names_the_line(home: Path, text: str, message: str) -> None:
    (home / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(env={"AIGOV_HOME": str(home)})
    assert str(info.value).startswith(f"{home / 'config.toml'}{message}"), str(info.value)


def test_bad_env_value_names_the_variable(home: Path) -> None:
    with pytest.raises(ConfigError, match="AIGOV_PORT"):
        load_config(env={"AIGOV_HOME": str(home), "AIGOV_PORT": "x"})


def test_platform_dirs_without_home() -> None:
    p = resolve_paths({})
    assert p.home is None and "aigov" in str(p.config_dir) and "aigov" in str(p.data_dir)


def refused(home: Path, config_toml: str) -> str:
    """The error that loading ``config_toml`` gives (it must give one, without the test's password)."""
    (home / "config.toml").write_text(config_toml)
    with pytest.raises(ConfigError) as info:
        load_config(env={"AIGOV_HOME": str(home)})
    message = str(info.value)
    assert "s3cret" not in message
    return message


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://", "rate_limit_url redis://: no host: redis://[:PASSWORD@]HOST:PORT/DB"),
        ("redis://:s3cret@127.0.0.1:6379/-1", "rate_limit_url redis://:***@127.0.0.1:6379/-1: the database must be "
                                              "a number from 0 up, not '-1'"),
        ("unix:///run/redis.sock?db=²", "the database must be a number from 0 up, not '²'"),
        ("memory://foo", "rate_limit_url memory://foo: nothing may follow memory://"),
        ("redis://cache/0?socket_timeout=1", "unknown option 'socket_timeout'"),
    ],
)
def test_a_bad_rate_limit_url_is_refused_with_its_file_and_line(home: Path, url: str, why: str) -> None:
    message = refused(home, f"# limits\nrate_limit_url = {url!r}\n")
    assert message.startswith(f"{home / 'config.toml'}:2: rate_limit_url ") and why in message, message


@pytest.mark.parametrize("url", ["memory://", "redis://127.0.0.1:6379/15", "rediss://:pw@cache:6380",
                                 "unix:///run/redis.sock?db=2"])
def test_good_rate_limit_urls_are_accepted(home: Path, url: str) -> None:
    assert load_config({"rate_limit_url": url}, env={"AIGOV_HOME": str(home)}).rate_limit_url == url


@pytest.mark.parametrize(
    ("url", "lacks"),
    [
        ("postgresql://", "names no host and no database"),
        ("postgres://aigov:s3cret@db.internal:5432", "names no database"),
        ("postgresql://aigov:s3cret@db.internal:5432/", "names no database"),
        ("postgresql://aigov:s3cret@/aigov", "names no host"),
        ("postgresql:///aigov?host=", "names no host"),
    ],
)
def test_a_postgresql_url_must_name_a_host_and_a_database(home: Path, url: str, lacks: str) -> None:
    message = refused(home, f"database_url = {url!r}\n")
    assert message.startswith(f"{home / 'config.toml'}:1: database_url "), message
    assert message.endswith(f"{lacks}: write it postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"), message


@pytest.mark.parametrize("url", ["postgresql://aigov@db.internal/aigov",
                                 "postgresql://aigov:pw@db.internal:5433/aigov?schema=team_a",
                                 "postgresql:///aigov?host=/run/postgresql"])  # a unix socket's directory
def test_postgresql_urls_naming_host_and_database_are_accepted(home: Path, url: str) -> None:
    from daemon.storage.postgres_db import PgTarget

    cfg = load_config({"database_url": url}, env={"AIGOV_HOME": str(home)})
    target = PgTarget.parse(cfg.database_url)
    assert target.host in ("db.internal", "/run/postgresql") and target.database == "aigov"


@pytest.mark.parametrize(
    ("line", "command", "expected"),
    [
        ('rate_limit_url = "redis://"', ["serve", "--port", "0"],
         ":1: rate_limit_url redis://: no host: redis://[:PASSWORD@]HOST:PORT/DB"),
        ('database_url = "postgresql://"', ["db", "status"],
         ":1: database_url postgresql://: names no host and no database: "
         "write it postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"),
    ],
)
def test_the_cli_says_which_line_of_config_toml_is_wrong(home: Path, line: str, command: list[str],
                                                         expected: str) -> None:
    from tests.daemon_proc import cli

    (home / "config.toml").write_text(line + "\n")
    r = cli(home, *command)
    assert r.returncode == 2 and r.stderr == f"aigov: error: {home / 'config.toml'}{expected}\n", r.stderr
