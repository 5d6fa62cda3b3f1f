"""``rate_limit_url``: what a limiter URL may say, checked without the redis extra.

The configuration checks every URL when it is read, so that a mistake is reported with the file
and line it came from (and before anything starts); the Redis limiter checks it again when it
connects, with the same words.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

REDIS_SCHEMES = ("redis", "rediss", "unix")
# Query options a URL may carry; the timeouts, retries and health checks are aigov's to set.
URL_OPTIONS = frozenset({"db", "password", "username", "client_name"})
TLS_OPTIONS = frozenset({"ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_path", "ssl_certfile", "ssl_keyfile",
                         "ssl_check_hostname"})


def check_url(url: str) -> None:
    """ValueError saying what is wrong when ``url`` is not ``memory://`` or a Redis URL aigov can use.

    The message never repeats the URL: callers name it, with its password masked.
    """
    if url.partition("://")[0] == "memory":
        if url != "memory://":  # memory://foo would look like it names something; it cannot
            raise ValueError("nothing may follow memory:// (it keeps limits in this process)")
        return
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"not a valid URL ({e})") from None
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError("the scheme must be redis://, rediss:// or unix:// (or memory://)")
    query = parse_qs(parts.query, keep_blank_values=True)
    allowed = URL_OPTIONS | (TLS_OPTIONS if parts.scheme == "rediss" else frozenset())
    unknown = sorted(set(query) - allowed)
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} (known: {', '.join(sorted(allowed))})")
    databases = list(query.get("db", []))
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL needs the socket's path: unix:///PATH?db=N")
    else:
        if not parts.hostname:
            raise ValueError("no host: redis://[:PASSWORD@]HOST:PORT/DB")
        if port == 0:
            raise ValueError("the port must be 1-65535")
        if db := parts.path.strip("/"):
            databases.insert(0, db)
    for db in databases:
        if not (db.isascii() and db.isdigit()):  # isdigit alone takes '²' and other scripts' digits
            raise ValueError(f"the database must be a number from 0 up, not {db!r}")
