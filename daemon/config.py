"""Configuration: one frozen :class:`Config`, loaded with the precedence
command-line flag > ``AIGOV_*`` environment variable > ``config.toml`` > default.

Paths: ``AIGOV_HOME`` (or ``aigov --home``) puts every file under one
directory; without it platformdirs' per-user config, data and state
directories for "aigov" are used.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError
from daemon.units import parse_rate

CONFIG_FILE = "config.toml"
POLICY_FILE = "policy.toml"
DB_FILE = "aigov.db"
PID_FILE = "aigov.pid"
LOG_FILE = "aigov.log"
FINGERPRINT_FILE = "fingerprint.key"
LOG_INPUTS = ("none", "redacted", "full")
RATE_LIMIT_SCHEMES = ("memory", "redis", "rediss", "unix")
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres")
POSTGRESQL_FORM = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


@dataclass(frozen=True)
class Paths:
    """Where aigov keeps its files."""

    config_dir: Path
    data_dir: Path
    state_dir: Path
    home: Path | None = None

    @property
    def config_file(self) -> Path:
        """The TOML configuration file."""
        return self.config_dir / CONFIG_FILE

    @property
    def default_policy_file(self) -> Path:
        """The policy file used when ``policy_file`` is not configured."""
        return self.config_dir / POLICY_FILE

    @property
    def db_file(self) -> Path:
        """The default SQLite database."""
        return self.data_dir / DB_FILE

    @property
    def fingerprint_file(self) -> Path:
        """The default secret of the decision log's input fingerprints."""
        return self.data_dir / FINGERPRINT_FILE

    @property
    def pid_file(self) -> Path:
        """The running daemon's pid file (also its single-instance lock)."""
        return self.state_dir / PID_FILE

    @property
    def log_file(self) -> Path:
        """The log file of a detached daemon."""
        return self.state_dir / LOG_FILE

    def ensure(self) -> None:
        """Create the directories, mode 0700."""
        for d in {self.config_dir, self.data_dir, self.state_dir}:
            d.mkdir(mode=0o700, parents=True, exist_ok=True)


def resolve_paths(env: Mapping[str, str] | None = None) -> Paths:
    """Paths from ``AIGOV_HOME`` or the platform's per-user directories."""
    env = os.environ if env is None else env
    home = env.get("AIGOV_HOME")
    if home:
        h = Path(home).expanduser().absolute()
        return Paths(h, h, h, home=h)
    import platformdirs

    return Paths(
        Path(platformdirs.user_config_dir("aigov")),
        Path(platformdirs.user_data_dir("aigov")),
        Path(platformdirs.user_state_dir("aigov")),
    )


@dataclass(frozen=True)
class Config:
    """Every setting of aigov, with its default. Immutable; build a new one to change it."""

    host: str = "127.0.0.1"
    port: int = 8080
    db_path: str = ""
    policy_file: str = ""
    max_body_bytes: int = 1024 * 1024
    bcrypt_cost: int = 12
    default_rate_limit: str = "100/60s"
    log_inputs: str = "redacted"
    log_batch_size: int = 50
    log_flush_interval: float = 5.0
    log_queue_size: int = 10_000
    log_enqueue_timeout: float = 0.5
    log_retention_days: int = 0
    key_refresh_interval: float = 0.25
    shutdown_timeout: float = 10.0
    log_level: str = "info"
    database_url: str = ""
    rate_limit_url: str = "memory://"
    rate_limit_on_error: str = "open"
    rate_limit_timeout: float = 0.05
    redis_prefix: str = "aigov"
    workers: int = 1
    fingerprint_secret_file: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    sentry_dsn: str = ""
    sentry_environment: str = "production"
    policy_watch_interval: float = 0.0
    paths: Paths = field(default_factory=resolve_paths, compare=False)

    @property
    def db_file(self) -> Path:
        """The SQLite database in use (``database_url`` of sqlite:///PATH, else ``db_path``, else the default)."""
        if self.database_url.startswith("sqlite:"):
            return Path(sqlite_path(self.database_url))
        return Path(self.db_path).expanduser() if self.db_path else self.paths.db_file

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``: which store keeps keys and decisions."""
        return "postgresql" if self.database_url.startswith(("postgresql:", "postgres:")) else "sqlite"

    @property
    def database(self) -> str:
        """Where keys and decisions are, for people: the SQLite file, or the URL without its password."""
        return mask_url(self.database_url) if self.backend == "postgresql" else str(self.db_file)

    @property
    def fingerprint_path(self) -> Path:
        """The file holding the secret of the input fingerprints."""
        if self.fingerprint_secret_file:
            return Path(self.fingerprint_secret_file).expanduser()
        return self.paths.fingerprint_file

    @property
    def policy_path(self) -> Path:
        """The policy file in use."""
        return Path(self.policy_file).expanduser() if self.policy_file else self.paths.default_policy_file

    @property
    def rate_limit(self) -> tuple[int, float]:
        """The default per-key rate limit as (requests, window seconds)."""
        return parse_rate(self.default_rate_limit)

    @property
    def url(self) -> str:
        """The daemon's base URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def tls(self) -> bool:
        """Whether the daemon serves HTTPS (``tls_cert`` and ``tls_key`` are set)."""
        return bool(self.tls_cert and self.tls_key)


_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name != "paths"}
_TYPES: dict[str, type] = {"host": str, "port": int, "db_path": str, "policy_file": str, "log_inputs": str,
                           "default_rate_limit": str, "log_level": str, "database_url": str, "rate_limit_url": str,
                           "rate_limit_on_error": str, "redis_prefix": str, "fingerprint_secret_file": str,
                           "tls_cert": str, "tls_key": str, "sentry_dsn": str, "sentry_environment": str,
                           "policy_watch_interval": float}


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///ABS/PATH`` URL; ValueError for any other form."""
    rest = url[len("sqlite:"):]
    if not rest.startswith("///") or len(rest) == 3:
        raise ValueError("write it sqlite:///ABSOLUTE/PATH (three slashes, then the path)")
    return "/" + rest[3:].lstrip("/")


def postgresql_url_problem(url: str) -> str | None:
    """What a ``postgresql://`` URL lacks for aigov to use it (None when it names a host and a database).

    libpq would fill the gaps with defaults (the local socket, a database named after the user), so
    ``postgresql://`` alone would make tables wherever those point: aigov asks for both by name.
    """
    from urllib.parse import parse_qs, urlsplit

    try:
        parts = urlsplit(url)
    except ValueError as e:
        return f"not a valid URL ({e}): write it {POSTGRESQL_FORM}"
    try:
        parts.port  # noqa: B018  (read for its ValueError)
    except ValueError:
        return "the port must be a number from 1 to 65535"
    query = parse_qs(parts.query, keep_blank_values=True)
    host = parts.hostname or any(v for v in query.get("host", []))  # ?host=/run/postgresql: a unix socket
    database = parts.path.strip("/")
    missing = [what for what, there in (("host", host), ("database", database)) if not there]
    if missing:
        return f"names no {' and no '.join(missing)}: write it {POSTGRESQL_FORM}"
    return None


def parse_workers(value: int | str) -> int:
    """``workers``: a count (0 = one per core) or ``auto``; ValueError otherwise."""
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return 0
        value = int(value)
    if not 0 <= value <= 512:
        raise ValueError("must be between 0 and 512, or auto")
    return value


def _field_type(name: str) -> type:
    if name in _TYPES:
        return _TYPES[name]
    default = _FIELDS[name].default
    return type(default)


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check (and for env strings, convert) one setting; ConfigError names the key."""
    if name == "workers" and isinstance(value, int | str) and not isinstance(value, bool):
        try:
            return parse_workers(value)
        except ValueError as e:
            why = str(e) if "between" in str(e) else "must be a number of processes or auto"
            raise ConfigError(f"{source}: workers {why}, got {value!r}") from None
    want = _field_type(name)
    if isinstance(value, str) and want is not str and source.startswith("environment"):
        try:
            value = want(value)
        except ValueError:
            raise ConfigError(f"{source}: {name} must be {want.__name__}, got {value!r}") from None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, want) or isinstance(value, bool):
        raise ConfigError(f"{source}: {name} must be {want.__name__}, got {type(value).__name__} {value!r}")
    _validate(name, value, source)
    return value


def _validate(name: str, value: Any, source: str) -> None:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{source}: {name} {why}, got {value!r}")

    if name == "port" and not 0 <= value <= 65535:
        raise bad("must be between 0 and 65535")
    if name == "bcrypt_cost" and not 10 <= value <= 16:
        raise bad("must be between 10 and 16")
    if name == "log_inputs" and value not in LOG_INPUTS:
        raise bad("must be one of none, redacted, full")
    if name in ("max_body_bytes", "log_batch_size", "log_queue_size") and value < 1:
        raise bad("must be at least 1")
    if name in ("log_flush_interval", "key_refresh_interval", "log_enqueue_timeout", "shutdown_timeout") and (
        value <= 0
    ):
        raise bad("must be positive")
    if name == "log_retention_days" and value < 0:
        raise bad("must be 0 (keep forever) or more")
    if name == "log_level" and value not in ("debug", "info", "warning", "error"):
        raise bad("must be one of debug, info, warning, error")
    if name == "default_rate_limit":
        try:
            parse_rate(value)
        except ValueError as e:
            raise ConfigError(f"{source}: {name}: {e}") from None
    if name == "rate_limit_on_error" and value not in ("open", "closed"):
        raise bad("must be open or closed")
    if name == "rate_limit_timeout" and not 0 < value <= 10:
        raise bad("must be more than 0 and at most 10 seconds")
    if name == "redis_prefix" and (not value or any(c in value for c in "{}") or not value.isprintable()):
        raise bad("must be non-empty printable text without { or }")
    if name == "rate_limit_url":
        scheme = value.partition("://")[0]
        if "://" not in value or scheme not in RATE_LIMIT_SCHEMES:
            raise ConfigError(f"{source}: {name} must be memory://, redis://HOST:PORT/DB, rediss://... or "
                              f"unix:///PATH?db=N, got {mask_url(value)!r}")
        # All of it, here rather than when the limiter is made, so the message says where the URL came from.
        from daemon.ratelimit.url import check_url

        try:
            check_url(value)
        except ValueError as e:
            raise ConfigError(f"{source}: {name} {mask_url(value)}: {e}") from None
    if name == "database_url" and value:
        scheme = value.partition(":")[0]
        if scheme not in DATABASE_SCHEMES or "://" not in value:
            raise ConfigError(f"{source}: {name} must be sqlite:///ABS/PATH or "
                              f"{POSTGRESQL_FORM}, got {mask_url(value)!r}")
        if scheme == "sqlite":
            try:
                sqlite_path(value)
            except ValueError as e:
                raise ConfigError(f"{source}: {name}: {e}") from None
        elif why := postgresql_url_problem(value):
            raise ConfigError(f"{source}: {name} {mask_url(value)}: {why}")
    if name == "policy_watch_interval" and value < 0:
        raise bad("must be 0 (off) or a number of seconds")
    if name == "sentry_dsn" and value:
        _check_dsn(value, source)
    if name == "sentry_environment" and not value:
        raise bad("must not be empty")


def _check_dsn(dsn: str, source: str) -> None:
    """A Sentry DSN is ``https://PUBLIC_KEY@HOST/PROJECT_ID``; the message never repeats the key."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(dsn)
        ok = u.scheme in ("http", "https") and bool(u.username) and bool(u.hostname) and bool(u.path.strip("/"))
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"{source}: sentry_dsn must look like https://KEY@HOST/PROJECT_ID")


def _check_pairs(values: Mapping[str, Any]) -> None:
    """Settings that only make sense together."""
    if bool(values.get("tls_cert")) != bool(values.get("tls_key")):
        given, missing = ("tls_cert", "tls_key") if values.get("tls_cert") else ("tls_key", "tls_cert")
        raise ConfigError(f"{given} is set but {missing} is not: HTTPS needs both (or neither, for plain HTTP)")


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for every message that shows a URL)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, q, query = rest.partition("?")  # first: a query may follow the host with no "/" between
    netloc, slash, path = rest.partition("/")
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    elif at and scheme.startswith("redis") and userinfo:  # redis://PASSWORD@host: a password alone, as
        userinfo = "***"  # people write it (PostgreSQL's user part alone is a user name)
    masked = f"{userinfo}{at}{host}" if at else netloc
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", query)  # ?password=... too
    return f"{scheme}{sep}{masked}{slash}{path}{q}{query}"


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse and check a config file; missing file -> empty dict."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        at = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
        if at:
            raise ConfigError(f"{path}:{at[1]}: invalid TOML: {msg[:at.start()]} (column {at[2]})") from None
        raise ConfigError(f"{path}: invalid TOML: {msg}") from None
    out: dict[str, Any] = {}
    for k, v in data.items():
        where = _key_location(path, text, k)
        if k not in _FIELDS:
            known = ", ".join(sorted(_FIELDS))
            raise ConfigError(f"{where}: unknown key {k!r} (known keys: {known})")
        out[k] = _coerce(k, v, where)
    return out


def _key_location(path: Path, text: str, key: str) -> str:
    """``FILE:LINE`` of the top-level ``key = ...`` in a config file (``FILE`` when it cannot be found)."""
    rx = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
    for n, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("["):  # a table: keys below it are not top-level
            break
        if rx.match(line):
            return f"{path}:{n}"
    return str(path)


def load_config(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    paths: Paths | None = None,
) -> Config:
    """Build the Config: flag ``overrides`` > ``AIGOV_*`` env > config file > default."""
    env = os.environ if env is None else env
    paths = paths or resolve_paths(env)
    values = read_config_file(paths.config_file)
    for name in _FIELDS:
        raw = env.get("AIGOV_" + name.upper())
        if raw is not None and raw != "":
            values[name] = _coerce(name, raw, f"environment variable AIGOV_{name.upper()}")
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _coerce(name, value, "command line")
    _check_pairs(values)
    return Config(paths=paths, **values)


def default_config_text() -> str:
    """The commented config.toml that ``aigov init`` writes."""
    return f'''# aigov configuration. Every key is optional; shown here with its default.
# Precedence: command-line flag > AIGOV_<KEY> environment variable > this file > default.

# Address the daemon listens on. Keep it on loopback unless a proxy fronts it.
host = "127.0.0.1"
port = 8080

# SQLite database (keys and decision log). Empty: {DB_FILE} in the data directory.
db_path = ""
# Policy file. Empty: {POLICY_FILE} beside this file.
policy_file = ""

# Requests larger than this are refused with 413.
max_body_bytes = 1048576
# bcrypt cost for API key hashes (10..16).
bcrypt_cost = 12
# Rate limit given to new keys: N/PERIOD, e.g. "100/60s", "1000/1h".
default_rate_limit = "100/60s"

# What the decision log keeps of each input: "none", "redacted" or "full".
log_inputs = "redacted"
# The decision log writes a batch when it holds this many records...
log_batch_size = 50
# ...or when this many seconds have passed.
log_flush_interval = 5.0
# Records waiting to be written; when full for log_enqueue_timeout seconds, requests get 503.
log_queue_size = 10000
log_enqueue_timeout = 0.5
# Days of decisions to keep (0: keep forever).
log_retention_days = 0

# Where keys and decisions live. Empty: the SQLite file above. Several daemons share one store with
# postgresql://USER[:PASSWORD]@HOST:PORT/DB (install aigov[postgres]).
database_url = ""
# Where rate limits are counted. memory:// is per process; several processes or daemons share exact
# limits through Redis: redis://[:PASSWORD@]HOST:PORT/DB, rediss://... or unix:///PATH?db=N (aigov[redis]).
rate_limit_url = "memory://"
# When Redis cannot answer within rate_limit_timeout seconds: "open" lets the request through (and
# the decision record says the limiter was unavailable), "closed" answers 503 rate_limit_unavailable.
rate_limit_on_error = "open"
rate_limit_timeout = 0.05
# Prefix of every Redis key, so that several deployments can share one server.
redis_prefix = "aigov"
# Processes of `aigov serve` on one port (0 or "auto": one per core). More than 1 needs Redis.
workers = 1
# The secret that keys the decision log's input fingerprints (created on first start, mode 0600).
# Daemons that share a database should share this file. Empty: {FINGERPRINT_FILE} in the data directory.
fingerprint_secret_file = ""

# How often the daemon picks up key changes made by the CLI (seconds).
key_refresh_interval = 0.25
# Seconds in-flight requests get to finish on SIGTERM.
shutdown_timeout = 10.0
log_level = "info"

# HTTPS: a PEM certificate (chain) and its unencrypted private key (mode 0600). Both or neither.
# Without them the daemon speaks plain HTTP: keep it on loopback, or behind a TLS proxy.
tls_cert = ""
tls_key = ""

# Report unexpected errors to Sentry (needs `pip install 'aigov[sentry]'`). Empty: off.
# Request data never leaves: no prompts, tokens or headers (see README, "Deploying").
sentry_dsn = ""
sentry_environment = "production"

# Seconds between looks at the policy file; a changed file is loaded as on SIGHUP. 0: off.
policy_watch_interval = 0.0
'''


__all__ = ["Config", "Paths", "load_config", "resolve_paths", "default_config_text"]
