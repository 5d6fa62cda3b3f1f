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
