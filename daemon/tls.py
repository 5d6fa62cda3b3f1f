"""HTTPS for the daemon: the server's SSL context, the plain-HTTP warning, and the CLI's pinned client context.

The server context is the standard library's for serving (``ssl.create_default_context(CLIENT_AUTH)``:
its cipher list, no compression, no renegotiation) with TLS 1.2 as the floor. The CLI's own calls to
the daemon of its home (``aigov status``, ``serve --detach``, ``policy reload``, ``audit``,
``loadtest``) trust exactly the configured certificate: they reach it at the address in the pid
file (``0.0.0.0``, ``127.0.0.1``), which a certificate rarely names, so the certificate is pinned
instead of the host name checked.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from daemon.errors import ConfigError

if TYPE_CHECKING:
    from daemon.config import Config

log = logging.getLogger("aigov")


def _encrypted_key() -> NoReturn:
    # load_cert_chain would otherwise prompt on the terminal, or hang a daemon without one.
    raise ConfigError("tls_key is encrypted: aigov needs an unencrypted PEM key (keep it mode 0600)")


def _readable(name: str, value: str) -> Path:
    path = Path(value).expanduser()
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as e:
        raise ConfigError(f"{name}: cannot read {path}: {e.strerror or e}") from None
    return path


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The SSL context serving ``cert`` (PEM, leaf first) with ``key``; ConfigError names what is wrong."""
    cert_path, key_path = _readable("tls_cert", cert), _readable("tls_key", key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert_path, key_path, password=_encrypted_key)
    except ssl.SSLError as e:
        raise ConfigError(
            f"tls_cert/tls_key: cannot load {cert_path} with {key_path}: {e.reason or e} "
            "(PEM files expected; the key must belong to the certificate)"
        ) from None
    return ctx


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and literal loopback addresses."""
    h = host.strip("[]").rstrip(".").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def listen_context(config: Config) -> ssl.SSLContext | None:
    """The context for the daemon's listening site, None for plain HTTP (warned about beyond loopback)."""
    if config.tls:
        return server_context(config.tls_cert, config.tls_key)
    if not is_loopback(config.host):
        log.warning(
            "listening on %s without TLS: API tokens and prompts cross the network in clear text; "
            "set tls_cert and tls_key, or keep host on loopback behind a TLS proxy", config.host,
        )
    return None


def client_context(ca_file: str | None = None, pinned_cert: str | None = None) -> ssl.SSLContext:
    """A client context: trust ``ca_file`` (host name checked), or exactly ``pinned_cert`` (host name not
    checked: the certificate itself is the identity), or else the system's trust store."""
    if pinned_cert:
        ctx = ssl.create_default_context(cafile=str(_readable("tls_cert", pinned_cert)))
        ctx.check_hostname = False
        # A CA-issued leaf is not self-signed: accept it as its own trust anchor.
        ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    elif ca_file:
        try:
            ctx = ssl.create_default_context(cafile=str(_readable("--ca-file", ca_file)))
        except ssl.SSLError as e:
            raise ConfigError(f"--ca-file: {ca_file} holds no PEM certificate: {e.reason or e}") from None
    else:
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def local_client_context(config: Config) -> ssl.SSLContext | None:
    """The context the CLI uses for the daemon of its own home: pinned to ``tls_cert``; None without TLS."""
    return client_context(pinned_cert=config.tls_cert) if config.tls else None


__all__ = ["client_context", "is_loopback", "listen_context", "local_client_context", "server_context"]
