"""A thin Python client of the aigov daemon's ``POST /v1/check``: :class:`Client` and :class:`AsyncClient`.

    from aigov_cli.client import Client

    with Client() as aigov:                       # AIGOV_URL / AIGOV_TOKEN, else the home's daemon
        result = aigov.check("What is the capital of France?", model="gpt-4o")
        if not result.allowed:
            ...

It speaks HTTP only and imports nothing of the daemon. The synchronous client is the standard
library's ``http.client`` over a small pool of keep-alive connections (thread-safe); the
asynchronous one is an ``aiohttp`` session, which aigov depends on already. Neither sets up a
connection per call.

Errors are :class:`AigovClientError` and its subclasses: :class:`Unavailable` (the daemon cannot be
reached, times out or answers 5xx, or what answered is not aigov; with ``on_error="open"`` a check
returns an allowing result marked ``degraded`` instead), :class:`RateLimited` (with ``retry_after``),
:class:`Unauthorized` and :class:`EventLoopMismatch`. A check is not retried (it is cheap for the
caller to redo), except once when a kept-alive connection turns out to have been closed by the
daemon (a restart, an idle timeout).

An answer is aigov's only when it is JSON (``application/json``) and either a valid decision (a 200)
or aigov's error shape, ``{"error": {"code": str, "message": str}}``. Anything else (an HTML page, a
proxy's own JSON, a contradictory decision, a redirect) is :class:`Unavailable`, and its message says
what came back (status and content type), never the body, which may echo the text checked.
Redirects are never followed, by either client: following one would send the text to an address
the caller did not configure.
"""

from __future__ import annotations

import asyncio
import errno
import http.client
import json
import logging
import math
import os
import socket
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "AigovClientError", "AsyncClient", "CheckResult", "Client", "EventLoopMismatch", "PolicyRef", "RateLimited",
    "Reason", "Unauthorized", "Unavailable",
]

log = logging.getLogger("aigov.client")

DEFAULT_URL = "http://127.0.0.1:8080"
CHECK_PATH = "/v1/check"
DIRECTIONS = ("input", "output")
OnError = Literal["closed", "open"]
_IDLE_CONNECTIONS = 8  # kept-alive connections a sync client keeps for reuse
_JSON = "application/json"


class AigovClientError(Exception):
    """Any error of the aigov client; ``status`` and ``code`` are the daemon's, when it answered."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Unavailable(AigovClientError):
    """The daemon could not be reached, timed out, answered 5xx, or the answer is not aigov's (a redirect,
    another server's page or JSON, an invalid decision)."""


class RateLimited(AigovClientError):
    """The key's rate limit is used up; ``retry_after`` is the daemon's Retry-After, in seconds."""

    def __init__(self, message: str, *, retry_after: float, status: int = 429, code: str = "rate_limited") -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class Unauthorized(AigovClientError):
    """No token, or the daemon refused it (malformed, unknown, revoked, expired or wrong)."""


class EventLoopMismatch(AigovClientError):
    """An :class:`AsyncClient` used on an event loop other than the one it first ran on.

    Not an :class:`Unavailable`: it is a mistake in the calling code, and ``on_error="open"`` would
    otherwise let every check through unchecked."""


@dataclass(frozen=True, slots=True)
class Reason:
    """One finding of the policy: which rule, which detector, what it did, and where (character offsets)."""

    rule: str
    detector: str
    action: str
    message: str
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True, slots=True)
class PolicyRef:
    """The policy that decided: its name and version (a hash prefix of the policy file)."""

    name: str
    version: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The daemon's decision on one text; ``degraded`` when it is the ``on_error="open"`` stand-in."""

    allowed: bool
    decision: str
    reasons: tuple[Reason, ...]
    redacted_text: str | None
    request_id: str
    policy: PolicyRef | None
    degraded: bool = False

    @classmethod
    def from_json(cls, data: Any) -> CheckResult:
        """The result from a decoded 200 body, every field of the type it is declared with.

        ValueError when it is not a decision, or contradicts itself (``allowed`` true and
        ``decision`` "block"); the message names the field, never its value (which may echo the text).
        """
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        allowed = data.get("allowed")
        if not isinstance(allowed, bool):
            raise ValueError("allowed is not true or false")
        decision = data.get("decision")
        if decision not in ("allow", "block"):
            raise ValueError("decision is not 'allow' or 'block'")
        if decision != ("allow" if allowed else "block"):
            raise ValueError("decision contradicts allowed")
        request_id = _string(data, "request_id")
        items = data.get("reasons")
        if not isinstance(items, list):
            raise ValueError("reasons is not a list")
        reasons = tuple(_reason(r, f"reasons[{i}].") for i, r in enumerate(items))
        redacted = data.get("redacted_text")
        if redacted is not None and not isinstance(redacted, str):
            raise ValueError("redacted_text is not a string or null")
        pol = data.get("policy")
        if pol is not None and not isinstance(pol, dict):
            raise ValueError("policy is not an object")
        policy = None if pol is None else PolicyRef(_string(pol, "name", "policy."), _string(pol, "version", "policy."))
        return cls(allowed, decision, reasons, redacted, request_id, policy)

    @classmethod
    def degraded_allow(cls) -> CheckResult:
        """What ``on_error="open"`` answers when the daemon is unavailable."""
        return cls(True, "allow", (), None, "", None, degraded=True)


def _string(obj: dict[str, Any], key: str, where: str = "") -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{where}{key} is {'missing' if key not in obj else 'not a string'}")
    return value


def _offset(obj: dict[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:  # bool is an int to Python, not to JSON
        raise ValueError(f"{where}{key} is not a character offset (an integer >= 0, or null)")
    return value


def _reason(item: Any, where: str) -> Reason:
    if not isinstance(item, dict):
        raise ValueError(f"{where.rstrip('.')} is not an object")
    start, end = _offset(item, "start", where), _offset(item, "end", where)
    if start is not None and end is not None and start > end:
        raise ValueError(f"{where}start is after its end")
    return Reason(_string(item, "rule", where), _string(item, "detector", where), _string(item, "action", where),
                  _string(item, "message", where), start, end)


# --- configuration -----------------------------------------------------------------------


def home_pid_file() -> Path:
    """The pid file of the home's daemon: ``$AIGOV_HOME/aigov.pid``, else the per-user state directory's."""
    home = os.environ.get("AIGOV_HOME")
    if home:
        return Path(home).expanduser() / "aigov.pid"
    import platformdirs

    return Path(platformdirs.user_state_dir("aigov")) / "aigov.pid"


def home_daemon_url() -> str | None:
    """The URL the home's daemon wrote into its pid file (read as JSON, without the daemon's modules)."""
    try:
        info = json.loads(home_pid_file().read_text())
    except (OSError, ValueError):
        return None
    url = info.get("url") if isinstance(info, dict) else None
    return url if isinstance(url, str) and url else None


def default_url() -> str:
    """``AIGOV_URL``, else the home's running daemon, else http://127.0.0.1:8080."""
    return os.environ.get("AIGOV_URL") or home_daemon_url() or DEFAULT_URL


@dataclass(frozen=True)
class _Target:
    """Where checks go, parsed once."""

    scheme: str
    host: str
    port: int
    path: str  # the check path, under the URL's own path (for a daemon behind a path prefix)
    shown: str  # the URL as error messages show it (without any user:password)
    ssl: ssl.SSLContext | None


def _target(url: str, ca_file: str | None) -> _Target:
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"aigov URL must be http://HOST[:PORT] or https://HOST[:PORT], not {url!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"aigov URL has an invalid port: {url!r}") from None
    host = parts.hostname
    netloc = f"[{host}]" if ":" in host else host
    shown = f"{parts.scheme}://{netloc}:{port}{parts.path.rstrip('/')}"
    context = None
    if parts.scheme == "https":
        try:
            context = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot use the CA file {ca_file!r}: {getattr(e, 'strerror', None) or e}") from None
    elif ca_file:
        log.debug("ca_file %s is ignored for the plain-http URL %s", ca_file, shown)
    return _Target(parts.scheme, host, port, parts.path.rstrip("/") + CHECK_PATH, shown, context)


@dataclass(frozen=True, slots=True)
class _Reply:
    """One HTTP answer, as much of it as the client reads."""

    status: int
    content_type: str  # the media type, lower case, without parameters; "" when there is none
    retry_after: str | None
    location: str | None
    body: bytes

    @classmethod
    def of(cls, status: int, headers: Any, body: bytes) -> _Reply:
        """From a status, headers with ``.get`` (http.client's message or aiohttp's multidict) and the body."""
        ctype = (headers.get("Content-Type") or "").split(";")[0].strip().lower()
        return cls(status, ctype, headers.get("Retry-After"), headers.get("Location"), body)


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header: 1 when it is absent, or not a finite number >= 0."""
    try:
        seconds = float(value) if value is not None else math.nan
    except ValueError:  # an HTTP date: aigov sends seconds, so this is not worth parsing
        seconds = math.nan
    return seconds if math.isfinite(seconds) and seconds >= 0 else 1.0


# OpenSSL's verify codes, grouped by what the caller can do about them (the load tester's advice uses
# them too).
TLS_NAME_MISMATCH = frozenset((62, 64))  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
TLS_UNKNOWN_ISSUER = frozenset((2, 18, 19, 20, 21))  # no trusted CA signed it (self-signed, or an unknown issuer)
TLS_OUT_OF_DATE = frozenset((9, 10))  # X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED


class _Base:
    """What both clients share: configuration, the request body, and reading the answer."""

    def __init__(
        self,
        url: str | None,
        token: str | None,
        *,
        timeout: float,
        on_error: OnError,
        ca_file: str | None,
    ) -> None:
        if on_error not in ("closed", "open"):
            raise ValueError(f"on_error must be 'closed' or 'open', not {on_error!r}")
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.url = url or default_url()
        self.timeout = float(timeout)
        self.on_error: OnError = on_error
        env_ca = os.environ.get("AIGOV_CA_FILE") or None
        self._target = _target(self.url, ca_file or env_ca)
        # Where the CA came from, for a certificate error's advice.
        self._ca_source = f"ca_file={ca_file!r}" if ca_file else f"AIGOV_CA_FILE={env_ca!r}" if env_ca else None
        tok = token or os.environ.get("AIGOV_TOKEN")
        if not tok:
            raise Unauthorized("no aigov token: pass token=... or set AIGOV_TOKEN (aigov keys create prints one)")
        self._headers = {
            "Authorization": f"Bearer {tok.strip()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "aigov-client",
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self._target.shown!r}, on_error={self.on_error!r})"  # never the token

    @staticmethod
    def _body(text: str, model: str, operation: str, metadata: dict[str, Any] | None, direction: str) -> bytes:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'input' or 'output', not {direction!r}")
        payload: dict[str, Any] = {"model": model, "operation": operation, "input_text": text}
        if metadata is not None:
            payload["metadata"] = metadata
        if direction != "input":
            payload["direction"] = direction
        try:
            return json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError, UnicodeEncodeError) as e:
            raise ValueError(f"cannot send this check as JSON: {e}") from None

    def _answer(self, reply: _Reply) -> CheckResult:
        """The decision of a 200, the error of aigov's error answers, and Unavailable for anything else."""
        status = reply.status
        if 300 <= status < 400:
            raise self._redirected(reply)
        data: Any = None
        why = ""  # what is wrong with a JSON answer, for the message
        if reply.content_type == _JSON:
            try:
                data = json.loads(reply.body)
            except (ValueError, UnicodeDecodeError):
                why = ": not JSON"
            else:
                if status == 200:
                    try:
                        return CheckResult.from_json(data)
                    except ValueError as e:
                        why = f": {e}"
        err = data.get("error") if isinstance(data, dict) and status != 200 else None
        code = err.get("code") if isinstance(err, dict) else None
        message = err.get("message") if isinstance(err, dict) else None
        if not (isinstance(code, str) and isinstance(message, str)):
            shown_type = reply.content_type or "no Content-Type"
            raise Unavailable(f"{self._target.shown} answered HTTP {status} ({shown_type}), not as aigov does{why}; "
                              "is this the URL of an aigov daemon?", status=status)
        what = f"aigov at {self._target.shown}: {message}"
        if status == 401:
            raise Unauthorized(what, status=status, code=code)
        if status == 429:
            raise RateLimited(what, retry_after=_retry_after(reply.retry_after), status=status, code=code)
        if status >= 500:
            raise Unavailable(what, status=status, code=code)
        raise AigovClientError(what, status=status, code=code)

    def _redirected(self, reply: _Reply) -> Unavailable:
        """A redirect is not followed: it would send the text somewhere the caller did not configure."""
        here = self._target.shown + CHECK_PATH
        there = _shown_location(here, reply.location)
        if there == here:
            where, advice = "redirects to itself", "is this the URL of an aigov daemon?"
        elif there is None:
            where, advice = "redirects", "use the final URL"
        else:
            where, advice = f"redirects to {there.removesuffix(CHECK_PATH)}", "use the final URL"
        return Unavailable(f"{self._target.shown} {where} (HTTP {reply.status}); the aigov client follows no "
                           f"redirect (the text would go elsewhere): {advice}", status=reply.status)

    def _unavailable(self, why: object) -> Unavailable:
        return Unavailable(f"aigov at {self._target.shown} is unavailable: {why}")

    def _why(self, e: BaseException) -> str:
        """A short reason for an error (no traceback, never a request body), with advice that fits it."""
        if not isinstance(e, ssl.SSLCertVerificationError):
            return _why(e)
        what = e.verify_message or str(e)
        if e.verify_code in TLS_NAME_MISMATCH:
            return (f"TLS certificate is not for {self._target.host} ({what}): use a host name the certificate "
                    f"names, or re-issue it with {self._target.host} in its subjectAltName")
        if e.verify_code in TLS_OUT_OF_DATE:
            return f"TLS certificate is not valid now ({what}): renew it, or check this machine's clock"
        if e.verify_code in TLS_UNKNOWN_ISSUER and self._ca_source:
            return f"TLS certificate not trusted ({what}): the CA of {self._ca_source} did not sign it"
        if e.verify_code in TLS_UNKNOWN_ISSUER:
            return f"TLS certificate not trusted ({what}); pass ca_file= or set AIGOV_CA_FILE to the CA that signed it"
        return f"TLS certificate not trusted ({what})"

    def _degrade(self, e: Unavailable) -> CheckResult:
        if self.on_error == "closed":
            raise e
        log.warning("%s; allowing (on_error='open')", e)
        return CheckResult.degraded_allow()


def _shown_location(base: str, location: str | None) -> str | None:
    """A Location header resolved against ``base``, as scheme://host:port/path (no user, query or fragment)."""
    if not location:
        return None
    try:
        parts = urllib.parse.urlsplit(urllib.parse.urljoin(base, location.strip()))
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}{parts.path}"


# --- the synchronous client --------------------------------------------------------------

# A kept-alive connection the daemon has closed fails like this on the next request.
_BROKEN_KEEPALIVE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, http.client.BadStatusLine)


class Client(_Base):
    """A synchronous aigov client with a pool of keep-alive connections; safe to share between threads."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 2.0,
        on_error: OnError = "closed",
        ca_file: str | None = None,
    ) -> None:
        super().__init__(url, token, timeout=timeout, on_error=on_error, ca_file=ca_file)
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def check(
        self,
        text: str,
        *,
        model: str,
        operation: str = "chat",
        metadata: dict[str, Any] | None = None,
        direction: str = "input",
    ) -> CheckResult:
        """Ask the daemon about ``text``: sent to ``model`` (``direction="input"``) or answered by it (``"output"``)."""
        body = self._body(text, model, operation, metadata, direction)
        try:
            return self._answer(self._post(body))
        except Unavailable as e:
            return self._degrade(e)

    def _post(self, body: bytes) -> _Reply:
        if self._closed:
            raise AigovClientError("this aigov client is closed")
        conn, reused = self._take()
        try:
            return self._exchange(conn, body)
        except _BROKEN_KEEPALIVE as e:
            conn.close()
            if not reused:
                raise self._unavailable(e) from None
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise self._unavailable(self._why(e)) from None
        conn = self._connect()  # the daemon closed the kept-alive connection: one more try, on a new one
        try:
            return self._exchange(conn, body)
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise self._unavailable(self._why(e)) from None

    def _exchange(self, conn: http.client.HTTPConnection, body: bytes) -> _Reply:
        conn.request("POST", self._target.path, body=body, headers=self._headers)
        resp = conn.getresponse()
        reply = _Reply.of(resp.status, resp.headers, resp.read())
        if resp.will_close:
            conn.close()
        else:
            self._give(conn)
        return reply

    def _take(self) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _give(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def _connect(self) -> http.client.HTTPConnection:
        t = self._target
        conn: http.client.HTTPConnection
        if t.ssl is not None:
            conn = http.client.HTTPSConnection(t.host, t.port, timeout=self.timeout, context=t.ssl)
        else:
            conn = http.client.HTTPConnection(t.host, t.port, timeout=self.timeout)
        try:
            conn.connect()
            # Headers and body go out in one send(); without Nagle nothing waits for a delayed ACK.
            if conn.sock is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            conn.close()
            raise self._unavailable(self._why(e)) from None
        return conn

    def close(self) -> None:
        """Close the pooled connections; the client cannot be used afterwards."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _why(e: BaseException) -> str:
    """A short reason for an error (no traceback, and never a request body)."""
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(e, OSError) and e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"{os.strerror(e.errno)} (is `aigov serve` running?)"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


# --- the asynchronous client -------------------------------------------------------------


class AsyncClient(_Base):
    """An asyncio aigov client: one aiohttp session (a keep-alive pool) per client, used on one event loop.

    The session belongs to the loop of the first check; a check on any other loop (a second
    ``asyncio.run()``) raises :class:`EventLoopMismatch` rather than re-create it, since the first
    session's connections cannot be closed from another loop. Make one client per loop, e.g.
    ``async with AsyncClient() as aigov:`` inside the coroutine that ``asyncio.run()`` runs.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 2.0,
        on_error: OnError = "closed",
        ca_file: str | None = None,
    ) -> None:
        super().__init__(url, token, timeout=timeout, on_error=on_error, ca_file=ca_file)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the session's
        self._answered = 0  # answers received: after one, pooled connections may be stale
        self._closed = False
        t = self._target
        netloc = f"[{t.host}]" if ":" in t.host else t.host
        self._endpoint = f"{t.scheme}://{netloc}:{t.port}{t.path}"

    async def check(
        self,
        text: str,
        *,
        model: str,
        operation: str = "chat",
        metadata: dict[str, Any] | None = None,
        direction: str = "input",
    ) -> CheckResult:
        """Ask the daemon about ``text``: sent to ``model`` (``direction="input"``) or answered by it (``"output"``)."""
        body = self._body(text, model, operation, metadata, direction)
        try:
            return self._answer(await self._post(body))
        except Unavailable as e:
            return self._degrade(e)

    def _open(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._closed:
            raise AigovClientError("this aigov client is closed")
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            then = "a closed one" if self._loop.is_closed() else "another one"
            raise EventLoopMismatch(
                f"this aigov AsyncClient was first used on {then}; an AsyncClient works on one event loop: "
                "make one per loop (e.g. `async with AsyncClient() as aigov:` inside the code asyncio.run() runs)")
        if self._session is None:
            self._loop = loop
            connector = aiohttp.TCPConnector(ssl=self._target.ssl if self._target.ssl is not None else False,
                                             limit=100, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout), headers=self._headers,
            )
        return self._session

    async def _post(self, body: bytes) -> _Reply:
        import aiohttp

        session = self._open()
        for attempt in (1, 2):
            try:
                # Like the sync client, never follow a redirect: it would re-send the text elsewhere.
                async with session.post(self._endpoint, data=body, allow_redirects=False) as resp:
                    reply = _Reply.of(resp.status, resp.headers, await resp.read())
                    self._answered += 1
                    return reply
            except aiohttp.ClientConnectorCertificateError as e:
                raise self._unavailable(self._why(e.certificate_error)) from None
            except aiohttp.ClientConnectorError as e:  # a new connection failed: the daemon is not there
                raise self._unavailable(self._why(e.os_error)) from None
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
                # An established connection broke before the answer: after earlier answers, most
                # likely a kept-alive one the daemon had closed. One more try, on a new connection.
                if attempt == 2 or not self._answered:
                    raise self._unavailable(self._why(e)) from None
            except TimeoutError:
                raise self._unavailable("timed out") from None
            except aiohttp.ClientError as e:
                raise self._unavailable(self._why(e)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Close the session and its connections; the client cannot be used afterwards."""
        self._closed = True
        session, self._session = self._session, None
        if session is None:
            return
        if asyncio.get_running_loop() is self._loop:
            await session.close()
        else:  # its connections belong to another (likely closed) loop: they go when collected
            log.debug("the aigov session of another event loop is left to the garbage collector")

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
