"""Live probes of a running daemon: authentication, body limits, rate limit, leaks, cache headers.

The probes share one :class:`ProbeSession` so that the rate-limit probe can count
exactly what the probe key was admitted for. The only write an audit makes is
that probe key: created with a small limit and deleted afterwards, always.
"""

from __future__ import annotations

import http.client
import json
import secrets
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aigov_cli.audit.model import AuditContext, Finding, Severity

PROBE_LIMIT = 3
PROBE_WINDOW = 3600.0  # refill is negligible during the probe: exactly PROBE_LIMIT requests get in
PICKUP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Resp:
    """One HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes


class Transport(Protocol):
    """Sends one HTTP request to the daemon."""

    def __call__(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Resp:
        """Send it; OSError when the daemon cannot be reached."""
        ...


def http_transport(base_url: str, timeout: float = 10.0, context: ssl.SSLContext | None = None) -> Transport:
    """A transport over http.client to ``base_url`` (http or https, verified with ``context``)."""
    u = urllib.parse.urlsplit(base_url)
    if u.scheme not in ("http", "https") or not u.hostname:
        from daemon.errors import ConfigError

        raise ConfigError(f"--url must be http://HOST:PORT or https://HOST:PORT, not {base_url!r}")
    host, port = u.hostname, u.port
    prefix = u.path.rstrip("/")

    def send(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> Resp:
        conn = (http.client.HTTPSConnection(host, port, timeout=timeout, context=context) if u.scheme == "https"
                else http.client.HTTPConnection(host, port, timeout=timeout))
        try:
            conn.request(method, prefix + path, body=body, headers=headers)
            r = conn.getresponse()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        except http.client.HTTPException as e:
            raise OSError(str(e)) from None
        finally:
            conn.close()

    return send


@dataclass
class ProbeSession:
    """State shared by the probes: the transport, the canary text, what was sent and received."""

    send: Transport
    max_body: int = 1024 * 1024
    canary: str = field(default_factory=lambda: f"aigov-audit-canary-{secrets.token_hex(8)}")
    tokens: list[str] = field(default_factory=list)
    responses: list[tuple[str, Resp]] = field(default_factory=list)
    probe_token: str | None = None
    probe_key_id: str | None = None
    make_probe_key: Callable[[], tuple[str, str]] | None = None
    pickup_timeout: float = PICKUP_TIMEOUT

    def check(self, what: str, token: str | None, body: bytes, ctype: str = "application/json") -> Resp:
        """POST /v1/check and remember the response under ``what``."""
        h = {"Content-Type": ctype}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
            self.tokens.append(token)
        r = self.send("POST", "/v1/check", body, h)
        self.responses.append((what, r))
        return r

    def payload(self) -> bytes:
        """A valid request whose input holds the canary."""
        return json.dumps({"model": "aigov-audit", "operation": "chat", "input_text": f"audit probe {self.canary}",
                           "metadata": {"source": "audit"}}).encode()  # left out of `aigov logs` by default


def _f(fid: str, title: str, sev: Severity, evidence: str, fix: str) -> Finding:
    return Finding(fid, title, sev, evidence, fix, location=None)


def _status_finding(fid: str, what: str, r: Resp, want: int, sev: Severity, fix: str) -> list[Finding]:
    if r.status == want:
        return []
    return [_f(fid, f"{what} is not refused with {want}", sev, f"got HTTP {r.status}, expected {want}", fix)]


def probe_no_token(s: ProbeSession) -> list[Finding]:
    """A request without a token must get 401."""
    r = s.check("no token", None, s.payload())
    return _status_finding("AG801", "a request without a token", r, 401, Severity.CRITICAL,
                           "The daemon must authenticate every /v1/check; upgrade aigov or fix the proxy in front.")


def probe_malformed_token(s: ProbeSession) -> list[Finding]:
    """A malformed token must get 401."""
    r = s.check("malformed token", f"aigov_not-a-token-{s.canary}", s.payload())
    return _status_finding("AG802", "a malformed token", r, 401, Severity.CRITICAL,
                           "The daemon must reject tokens whose format or checksum is wrong.")


def probe_wrong_secret(s: ProbeSession) -> list[Finding]:
    """A well-formed token with a wrong secret must get 401."""
    from daemon import tokens

    key_id = s.probe_key_id or tokens.new_key_id()
    r = s.check("wrong secret", tokens.make_token(key_id, tokens.new_secret()), s.payload())
    return _status_finding("AG803", "a token with a wrong secret", r, 401, Severity.CRITICAL,
                           "The daemon must verify the secret of every token against its stored hash.")


def probe_oversized_body(s: ProbeSession) -> list[Finding]:
    """A body over max_body_bytes must get 413."""
    body = (s.canary.encode() + b" ") * (s.max_body // (len(s.canary) + 1) + 2)
    try:
        r = s.check("oversized body", None, body[: s.max_body + 1024])
    except OSError as e:  # a server may close the connection on an oversized body: that is a refusal too
        return [] if "reset" in str(e).lower() or "broken pipe" in str(e).lower() else [
            _f("AG805", "an oversized body is not refused with 413", Severity.MEDIUM, f"connection error: {e}",
               "Keep max_body_bytes set; the daemon must answer 413 before reading the body.")]
    return _status_finding("AG805", "an oversized body", r, 413, Severity.MEDIUM,
                           "Keep max_body_bytes set; the daemon must answer 413 before reading the body.")


def start_probe_key(s: ProbeSession) -> Finding | None:
    """Create the probe key and wait until the daemon accepts it; the first admitted request is bad JSON."""
    if s.make_probe_key is None:
        return _f("AG810", "rate-limit and JSON probes skipped", Severity.INFO,
                  "no local database to create a probe key in (the daemon at --url is not this home's)",
                  "Run `aigov audit` with the daemon's own home (AIGOV_HOME or --home) to probe them.")
    s.probe_key_id, s.probe_token = s.make_probe_key()
    deadline = time.monotonic() + s.pickup_timeout
    bad = b'{"model": "' + s.canary.encode() + b'", "input_text": '
    while True:
        h = {"Content-Type": "application/json", "Authorization": f"Bearer {s.probe_token}"}
        s.tokens.append(s.probe_token)
        r = s.send("POST", "/v1/check", bad, h)
        if r.status != 401:
            s.responses.append(("bad JSON", r))
            return None
        if time.monotonic() > deadline:
            s.probe_token = None
            return _f("AG810", "rate-limit and JSON probes skipped", Severity.INFO,
                      f"the daemon did not accept the probe key within {s.pickup_timeout:g} s "
                      "(it does not use this home's database)",
                      "Run `aigov audit` with the daemon's own home (AIGOV_HOME or --home) to probe them.")
        time.sleep(0.1)


def probe_bad_json(s: ProbeSession) -> list[Finding]:
    """A body that is not JSON must get 400 (sent with the probe key by :func:`start_probe_key`)."""
    got = [r for w, r in s.responses if w == "bad JSON"]
    if not got:
        return []
    return _status_finding("AG804", "a body that is not JSON", got[0], 400, Severity.MEDIUM,
                           "The daemon must answer invalid JSON with 400 invalid_json.")


def probe_rate_limit(s: ProbeSession) -> list[Finding]:
    """The probe key (limit 3) must be admitted exactly 3 times; then 429 with Retry-After."""
    if s.probe_token is None:
        return []
    statuses = [s.check(f"rate limit {i}", s.probe_token, s.payload()).status for i in range(4)]
    admitted = 1 + sum(1 for st in statuses if st != 429)  # the bad-JSON request counted too
    limited = [r for w, r in s.responses if w.startswith("rate limit") and r.status == 429]
    problems = []
    if statuses != [200, 200, 429, 429]:
        problems.append(f"limit {PROBE_LIMIT}: 5 requests were answered 400 then {', '.join(map(str, statuses))}; "
                        f"{admitted} admitted")
    if any("retry-after" not in r.headers for r in limited):
        problems.append("a 429 answer has no Retry-After header")
    if not problems:
        return []
    return [_f("AG806", "the rate limit is not enforced", Severity.HIGH, "; ".join(problems),
               "The daemon must refuse requests over a key's limit with 429; check the rate limiter.")]


def probe_metrics_leak(s: ProbeSession) -> list[Finding]:
    """/metrics must not contain any token or input text sent by the probes."""
    r = s.send("GET", "/metrics", None, {})
    s.responses.append(("/metrics", r))
    leaked = _leaks(s, r.body)
    if r.status != 200:
        return [_f("AG807", "/metrics is not available", Severity.LOW, f"GET /metrics answered {r.status}",
                   "Prometheus cannot scrape the daemon; check the daemon log.")]
    if not leaked:
        return []
    return [_f("AG807", "/metrics leaks tokens or input text", Severity.HIGH, f"/metrics contains {leaked}",
               "Metric labels must never carry tokens or input text; upgrade aigov.")]


def _leaks(s: ProbeSession, body: bytes) -> str | None:
    text = body.decode("utf-8", "replace")
    if s.canary in text:
        return "the probe's input text"
    for t in s.tokens:
        if t in text:
            return "a token sent by the probe"
        secret = t.rsplit("_", 1)[-1]
        if len(secret) >= 16 and secret in text:
            return "the secret part of a token sent by the probe"
    return None


def probe_error_bodies(s: ProbeSession) -> list[Finding]:
    """Error answers must be JSON errors that echo neither the token nor the input."""
    out = []
    for what, r in s.responses:
        if r.status < 400:
            continue
        leaked = _leaks(s, r.body)
        if leaked:
            out.append(_f("AG808", "an error answer leaks tokens or input text", Severity.HIGH,
                          f"the {r.status} answer to the {what} probe contains {leaked}",
                          "Error messages must never echo the request; upgrade aigov."))
        try:
            err = json.loads(r.body)["error"]
            ok = isinstance(err, dict) and isinstance(err.get("code"), str)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            out.append(_f("AG808", "an error answer is not a JSON error", Severity.LOW,
                          f"the {r.status} answer to the {what} probe is not {{\"error\": {{\"code\": ...}}}}",
                          "Every error must be JSON with an error code."))
    return out


def probe_cache_control(s: ProbeSession) -> list[Finding]:
    """Every answer to /v1/check must carry Cache-Control: no-store."""
    missing = sorted({f"{what} ({r.status})" for what, r in s.responses
                      if what != "/metrics" and "no-store" not in r.headers.get("cache-control", "")})
    if not missing:
        return []
    return [_f("AG809", "answers lack Cache-Control: no-store", Severity.MEDIUM,
               f"missing on: {', '.join(missing)}",
               "Every answer must carry Cache-Control: no-store so proxies never cache decisions.")]


PROBES: tuple[Callable[[ProbeSession], list[Finding]], ...] = (
    probe_no_token, probe_malformed_token, probe_oversized_body,
)
KEYED_PROBES: tuple[Callable[[ProbeSession], list[Finding]], ...] = (
    probe_wrong_secret, probe_bad_json, probe_rate_limit, probe_metrics_leak, probe_error_bodies, probe_cache_control,
)


def run_probes(s: ProbeSession, remove: Callable[[str], Any] | None = None) -> list[Finding]:
    """Run every probe in order; the probe key is deleted afterwards, whatever happens."""
    out: list[Finding] = []
    for p in PROBES:
        out += [_tag(f, p.__name__) for f in p(s)]
    try:
        skipped = start_probe_key(s)
        if skipped:
            out.append(_tag(skipped, "start_probe_key"))
        for p in KEYED_PROBES:
            out += [_tag(f, p.__name__) for f in p(s)]
    finally:
        if s.probe_key_id is not None and remove is not None:
            remove(s.probe_key_id)
    return out


def _tag(f: Finding, check: str) -> Finding:
    from dataclasses import replace

    return replace(f, check=f.check or check)


def check_live_probes(ctx: AuditContext) -> list[Finding]:
    """Probe the running daemon (or --url) over HTTP; skipped when none runs."""
    if not ctx.url:
        from aigov_cli.audit.model import CheckSkipped

        raise CheckSkipped("no daemon runs (start one, or give --url)")
    from daemon.tls import local_client_context

    # This home's own daemon: its certificate is pinned; a --url is verified by the system's trust store.
    own = not ctx.url_given or ctx.url == (ctx.daemon_info or {}).get("url")
    send = http_transport(ctx.url, context=local_client_context(ctx.config) if own else None)
    try:
        send("GET", "/healthz", None, {})
    except OSError as e:
        return [_f("AG702", "daemon cannot be reached", Severity.MEDIUM if ctx.url_given else Severity.LOW,
                   f"{ctx.url}/healthz: {e}", "Start it with `aigov serve`, or give the right --url.")]
    cfg = ctx.config
    make_key: Callable[[], tuple[str, str]] | None = None
    remove: Callable[[str], Any] | None = None
    if ctx.db_exists():
        from daemon import keyadmin

        def make_key() -> tuple[str, str]:
            return keyadmin.create_key(f"aigov-audit-probe-{int(time.time())}", PROBE_LIMIT, PROBE_WINDOW,
                                       expires_in_seconds=600, config=cfg)

        def remove(key_id: str) -> bool:
            return keyadmin.delete_key(key_id, config=cfg)

    s = ProbeSession(send, max_body=cfg.max_body_bytes, make_probe_key=make_key)
    try:
        return run_probes(s, remove)
    except OSError as e:
        return [_f("AG702", "daemon stopped answering during the probes", Severity.MEDIUM, f"{ctx.url}: {e}",
                   "See the daemon log.")]
