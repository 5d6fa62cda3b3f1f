"""The target daemon: URL validation (loopback only unless allowed) and small one-off HTTP calls."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from aigov_cli.loadtest.units import UsageError

CHECK_PATH = "/v1/check"


@dataclass(frozen=True)
class Target:
    """Where the traffic goes: host and port of an aigov daemon, and how to verify it over https."""

    url: str
    host: str
    port: int
    base_path: str
    tls: bool = False
    server_hostname: str | None = None  # the name the certificate is checked against (and SNI)
    ca_file: str | None = None
    pinned_cert: str | None = None  # this home's own tls_cert: trusted exactly, the host name not checked

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client context for an https target (None for http); UsageError for an unreadable CA file."""
        if not self.tls:
            return None
        from daemon.errors import ConfigError
        from daemon.tls import client_context

        try:
            return client_context(ca_file=self.ca_file, pinned_cert=self.pinned_cert)
        except ConfigError as e:
            raise UsageError(str(e)) from None

    @property
    def host_header(self) -> str:
        """The Host header value."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def check_path(self) -> str:
        """Path of the check endpoint."""
        return self.base_path + CHECK_PATH


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and literal addresses in 127.0.0.0/8 or ::1."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_target(
    url: str, allow_remote: bool = False, ca_file: str | None = None, pinned_cert: str | None = None
) -> Target:
    """Validate ``--url``: http or https, a host and port, and loopback unless ``allow_remote``."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"unsupported URL scheme {parts.scheme!r} in --url {url!r}: use http(s)://HOST:PORT")
    tls = parts.scheme == "https"
    if ca_file is not None and not tls:
        raise UsageError("--ca-file is for an https:// --url")
    host = parts.hostname
    if not host:
        raise UsageError(f"--url {url!r} has no host")
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise UsageError(f"--url {url!r} has an invalid port") from None
    if not allow_remote and not is_loopback(host):
        raise UsageError(
            f"refusing to send load to {host}: only loopback targets (127.0.0.0/8, ::1, localhost) "
            "are allowed without --allow-remote"
        )
    base = parts.path.rstrip("/")
    if base.endswith(CHECK_PATH):
        base = base[: -len(CHECK_PATH)]
    connect_host = "127.0.0.1" if host.lower().rstrip(".") == "localhost" else host
    target = Target(url=url, host=connect_host, port=port, base_path=base, tls=tls,
                    server_hostname=host if tls else None, ca_file=ca_file,
                    pinned_cert=pinned_cert if tls and ca_file is None else None)
    target.ssl_context()  # an unreadable --ca-file is a usage error now, not a failed run later
    return target


@dataclass(frozen=True)
class Response:
    """A small buffered HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes


async def request(
    target: Target,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_s: float = 5.0,
) -> Response:
    """One HTTP/1.1 request on a fresh connection (``Connection: close``), fully read."""

    async def go() -> Response:
        ctx = target.ssl_context()
        reader, writer = await asyncio.open_connection(
            target.host, target.port, ssl=ctx, server_hostname=target.server_hostname if ctx else None
        )
        try:
            lines = [
                f"{method} {target.base_path}{path} HTTP/1.1",
                f"Host: {target.host_header}",
                "Connection: close",
                "User-Agent: aigov-loadtest",
            ]
            for k, v in (headers or {}).items():
                lines.append(f"{k}: {v}")
            if body is not None:
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
            raw = await reader.read(-1)
        finally:
            writer.close()
        return _parse(raw)

    return await asyncio.wait_for(go(), timeout_s)


class NotHTTP(ConnectionError):
    """The server took the connection but sent no HTTP answer (an HTTPS server does that to HTTP)."""


def _parse(raw: bytes) -> Response:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/"):
        raise NotHTTP("no HTTP response")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out = bytearray()
        pos = 0
        while True:
            eol = body.find(b"\r\n", pos)
            if eol < 0:
                break
            size = int(body[pos:eol].split(b";")[0], 16)
            if size == 0:
                break
            out += body[eol + 2 : eol + 2 + size]
            pos = eol + 2 + size + 2
        body = bytes(out)
    return Response(status=status, headers=headers, body=body)


_METRIC_RE = re.compile(rb"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", re.M)


def parse_metrics(text: bytes, names: tuple[str, ...]) -> dict[str, float]:
    """Values of unlabelled (or summed labelled) Prometheus samples named in ``names``."""
    wanted = {n.encode() for n in names}
    out: dict[str, float] = {}
    for m in _METRIC_RE.finditer(text):
        name = m.group(1)
        if name in wanted:
            try:
                value = float(m.group(3))
            except ValueError:
                continue
            key = name.decode()
            out[key] = out.get(key, 0.0) + value
    return out


QUEUE_METRIC = "aigov_async_logger_queue_size"
RSS_METRIC = "process_resident_memory_bytes"


async def sample_metrics(target: Target, timeout_s: float = 2.0) -> dict[str, float] | None:
    """Queue depth and RSS from ``/metrics``, or None when unavailable."""
    try:
        resp = await request(target, "GET", "/metrics", timeout_s=timeout_s)
    except (TimeoutError, OSError, ValueError, IndexError):
        return None
    if resp.status != 200:
        return None
    return parse_metrics(resp.body, (QUEUE_METRIC, RSS_METRIC))
