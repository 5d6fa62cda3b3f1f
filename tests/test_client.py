"""The Python client (``aigov_cli.client``) against a real ``aigov serve``, sync and async.

Error paths a real daemon cannot be made to take on demand (a 5xx, an answer that is not aigov's,
a hang, TLS) use a small local stub server; everything else talks to the real daemon.
"""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from aigov_cli.client import (
    AigovClientError,
    AsyncClient,
    CheckResult,
    Client,
    EventLoopMismatch,
    PolicyRef,
    RateLimited,
    Reason,
    Unauthorized,
    Unavailable,
)
from tests.daemon_proc import DaemonProc, create_key, free_port, running_daemon
from tests.guard_policy import CARD, GITHUB, POLICY

pytestmark = pytest.mark.e2e
ALLOW = {"request_id": "01TEST", "allowed": True, "decision": "allow", "reasons": [],
         "policy": {"name": "default", "version": "abc"}, "redacted_text": None}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProc, dict[str, Any], dict[str, Any]]]:
    """One daemon for the module: (daemon, a key of a large limit, a key of limit 1 per hour)."""
    home = tmp_path_factory.mktemp("client") / "home"
    home.mkdir(mode=0o700)
    (home / "policy.toml").write_text(POLICY)
    env = {"AIGOV_BCRYPT_COST": "10", "AIGOV_LOG_FLUSH_INTERVAL": "0.05"}
    key = create_key(home, "client", "--rate-limit", "100000/60s")
    tight = create_key(home, "tight", "--rate-limit", "1/1h")
    with running_daemon(home, **env) as d:
        yield d, key, tight


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AIGOV_URL", "AIGOV_TOKEN", "AIGOV_CA_FILE"):
        monkeypatch.delenv(var, raising=False)


# --- a stub server for what the real daemon will not do ----------------------------------


class Stub:
    """An aiohttp server in a thread whose /v1/check answers as ``handler`` says."""

    def __init__(self, handler: Callable[[web.Request], Any], ssl_context: Any = None) -> None:
        self.handler = handler
        self.seen: list[dict[str, Any]] = []
        loop = asyncio.new_event_loop()
        self.loop = loop

        async def check(request: web.Request) -> web.StreamResponse:
            self.seen.append({"headers": dict(request.headers), "body": await request.read()})
            result = self.handler(request)
            if asyncio.iscoroutine(result):
                result = await result
            assert isinstance(result, web.StreamResponse)
            return result

        app = web.Application()
        app.router.add_post("/v1/check", check)
        app.router.add_post("/prefix/v1/check", check)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)  # a hung handler is not waited for
        ready = threading.Event()

        def run() -> None:
            loop.run_until_complete(self.runner.setup())
            site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=ssl_context)
            loop.run_until_complete(site.start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.runner.cleanup())
            pending = asyncio.all_tasks(loop)  # a hung handler's, past the shutdown timeout
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)
        self.port = self.runner.addresses[0][1]

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def stub() -> Iterator[Callable[..., Stub]]:
    made: list[Stub] = []

    def make(handler: Callable[[web.Request], Any], ssl_context: Any = None) -> Stub:
        s = Stub(handler, ssl_context)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def reply(status: int, data: Any, headers: dict[str, str] | None = None) -> Callable[[web.Request], web.Response]:
    body = data if isinstance(data, str) else json.dumps(data)
    ctype = "text/html" if isinstance(data, str) else "application/json"
    return lambda request: web.Response(status=status, text=body, content_type=ctype, headers=headers)


# --- the real daemon: sync -----------------------------------------------------------------


def test_allow_block_redact_and_typed_reasons(daemon: Any) -> None:
    d, key, _ = daemon
    with Client(d.url, key["token"]) as aigov:
        ok = aigov.check("What is the capital of France?", model="gpt-4o")
        assert ok.allowed and ok.decision == "allow" and ok.reasons == () and not ok.degraded
        assert isinstance(ok.policy, PolicyRef) and ok.policy.name == "default" and len(ok.request_id) == 26
        blocked = aigov.check(f"my card is {CARD}", model="gpt-4o", metadata={"user": "u1"})
        assert not blocked.allowed and blocked.decision == "block"
        (reason,) = blocked.reasons
        assert reason == Reason("pii.credit_card", "credit_card", "block", reason.message, 11, 30)
        redacted = aigov.check("write to ann@corp.example", model="gpt-4o", operation="completion")
        assert redacted.allowed and redacted.redacted_text == "write to [REDACTED:email]"


def test_direction_output(daemon: Any) -> None:
    d, key, _ = daemon
    with Client(d.url, key["token"]) as aigov:
        assert aigov.check(f"card {CARD}", model="gpt-4o", direction="output").allowed
        assert not aigov.check(f"token {GITHUB}", model="gpt-4o", direction="output").allowed
        with pytest.raises(ValueError, match="direction must be 'input' or 'output'"):
            aigov.check("x", model="gpt-4o", direction="sideways")


def test_url_and_token_from_the_environment_and_the_home(daemon: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    d, key, _ = daemon
    monkeypatch.setenv("AIGOV_TOKEN", key["token"])
    monkeypatch.setenv("AIGOV_URL", d.url)
    with Client() as aigov:
        assert aigov.check("hi", model="gpt-4o").allowed
    monkeypatch.delenv("AIGOV_URL")
    monkeypatch.setenv("AIGOV_HOME", str(d.home))  # the daemon's pid file names its URL
    with Client() as aigov:
        assert aigov.url == d.url and aigov.check("hi", model="gpt-4o").allowed


def test_one_connection_is_kept_alive(daemon: Any) -> None:
    d, key, _ = daemon
    with Client(d.url, key["token"]) as aigov:
        for _ in range(5):
            aigov.check("hi", model="gpt-4o")
        assert len(aigov._idle) == 1  # every check went over the same connection
        (conn,) = aigov._idle
        for _ in range(5):
            aigov.check("hi", model="gpt-4o")
        assert aigov._idle == [conn]


def test_errors_unauthorized_rate_limited_validation(daemon: Any) -> None:
    d, key, tight = daemon
    with pytest.raises(Unauthorized, match="no aigov token"):
        Client(d.url)
    wrong = key["token"][:-8] + "AAAAAAAA"
    with Client(d.url, wrong) as aigov, pytest.raises(Unauthorized) as e:
        aigov.check("hi", model="gpt-4o")
    assert e.value.status == 401 and e.value.code == "unauthorized" and wrong not in str(e.value)
    with Client(d.url, tight["token"]) as aigov:
        aigov.check("hi", model="gpt-4o")
        with pytest.raises(RateLimited) as limited:
            aigov.check("hi", model="gpt-4o")
    assert limited.value.retry_after > 60 and isinstance(limited.value, AigovClientError)
    with Client(d.url, key["token"]) as aigov, pytest.raises(AigovClientError) as bad:
        aigov.check("hi", model="gpt-4o", metadata={"nested": {"no": 1}})
    assert type(bad.value) is AigovClientError and bad.value.status == 422
    assert "metadata.nested" in str(bad.value)


def test_bad_arguments_are_clear(daemon: Any) -> None:
    d, key, _ = daemon
    for kwargs, message in [
        ({"on_error": "maybe"}, "on_error must be 'closed' or 'open'"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"url": "ftp://127.0.0.1"}, "aigov URL must be http://"),
        ({"url": "http://127.0.0.1:99999"}, "invalid port"),
        ({"url": "https://127.0.0.1", "ca_file": "/nonexistent/ca.pem"}, "cannot use the CA file"),
    ]:
        args: dict[str, Any] = {"url": d.url, "token": key["token"], **kwargs}
        with pytest.raises(ValueError, match=message):
            Client(**args)
    with Client(d.url, key["token"]) as aigov, pytest.raises(TypeError):
        aigov.check(b"bytes", model="gpt-4o")  # type: ignore[arg-type]
    assert key["token"] not in repr(Client(d.url, key["token"]))


def test_a_restarted_daemon_costs_one_retry_not_an_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    key = create_key(home, "restart")
    port = free_port()
    with running_daemon(home, port=port, AIGOV_BCRYPT_COST="10") as d, Client(d.url, key["token"]) as aigov:
        assert aigov.check("hi", model="gpt-4o").allowed
        d.stop()
        with running_daemon(home, port=port, AIGOV_BCRYPT_COST="10"):
            assert len(aigov._idle) == 1  # the connection to the stopped daemon, still pooled
            assert aigov.check("hi", model="gpt-4o").allowed


def test_stopped_daemon_closed_raises_open_degrades(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "aigov_x", timeout=1) as closed, pytest.raises(Unavailable, match="is `aigov serve` running"):
        closed.check("hi", model="gpt-4o")
    with Client(url, "aigov_x", on_error="open") as opened:
        r = opened.check("hi", model="gpt-4o")
    assert r == CheckResult(True, "allow", (), None, "", None, degraded=True)


# --- stubs: 5xx, not aigov, a hang, a path prefix, TLS -------------------------------------


def test_5xx_and_foreign_answers_are_unavailable(stub: Callable[..., Stub]) -> None:
    down = stub(reply(503, {"error": {"code": "unavailable", "message": "the daemon is shutting down"}}))
    with Client(down.url(), "t") as aigov, pytest.raises(Unavailable, match="shutting down") as e:
        aigov.check("hi", model="m")
    assert e.value.status == 503 and e.value.code == "unavailable"
    with Client(down.url(), "t", on_error="open") as aigov:
        assert aigov.check("hi", model="m").degraded
    foreign = stub(reply(200, "<html>a login page</html>"))
    with Client(foreign.url(), "t") as aigov, pytest.raises(Unavailable, match="not as aigov does"):
        aigov.check("hi", model="m")
    gone = stub(reply(404, {"error": {"code": "not_found", "message": "no such endpoint"}}))
    with Client(gone.url(), "t", on_error="open") as aigov, pytest.raises(AigovClientError) as nf:
        aigov.check("hi", model="m")  # a wrong URL is a mistake to see, not an outage to ride through
    assert nf.value.status == 404 and not isinstance(nf.value, Unavailable)


def test_a_hang_times_out(stub: Callable[..., Stub]) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    slow = stub(hang)
    with Client(slow.url(), "t", timeout=0.2) as aigov, pytest.raises(Unavailable, match="timed out"):
        aigov.check("hi", model="m")
    with Client(slow.url(), "t", timeout=0.2, on_error="open") as aigov:
        assert aigov.check("hi", model="m").degraded


def test_what_is_sent(stub: Callable[..., Stub]) -> None:
    s = stub(reply(200, ALLOW))
    with Client(s.url() + "/prefix/", "aigov_tok") as aigov:
        aigov.check("héllo", model="gpt-4o", operation="embedding", metadata={"a": 1}, direction="output")
        aigov.check("plain", model="gpt-4o")
    first, second = s.seen
    assert json.loads(first["body"]) == {"model": "gpt-4o", "operation": "embedding", "input_text": "héllo",
                                         "metadata": {"a": 1}, "direction": "output"}
    assert json.loads(second["body"]) == {"model": "gpt-4o", "operation": "chat", "input_text": "plain"}
    assert first["headers"]["Authorization"] == "Bearer aigov_tok"
    assert first["headers"]["Content-Type"] == "application/json"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with the openssl command."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is not installed (needed to make a test certificate)")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


def test_https_with_a_ca_file(
    stub: Callable[..., Stub], tls: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    cert, key = tls
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    s = stub(reply(200, ALLOW), ssl_context=ctx)
    with Client(s.url("https"), "t", ca_file=str(cert)) as aigov:
        assert aigov.check("hi", model="m").allowed
    with Client(s.url("https"), "t") as aigov, pytest.raises(Unavailable, match="certificate not trusted"):
        aigov.check("hi", model="m")
    monkeypatch.setenv("AIGOV_CA_FILE", str(cert))
    with Client(s.url("https"), "t") as aigov:
        assert aigov.check("hi", model="m").allowed

    async def run() -> None:
        async with AsyncClient(s.url("https"), "t") as aigov:
            assert (await aigov.check("hi", model="m")).allowed
        monkeypatch.delenv("AIGOV_CA_FILE")
        async with AsyncClient(s.url("https"), "t") as aigov:
            with pytest.raises(Unavailable, match="certificate not trusted"):
                await aigov.check("hi", model="m")

    asyncio.run(run())


# --- the real daemon: async ----------------------------------------------------------------


async def test_async_allow_block_and_errors(daemon: Any) -> None:
    d, key, tight = daemon
    async with AsyncClient(d.url, key["token"]) as aigov:
        ok, blocked, redacted, out = await asyncio.gather(
            aigov.check("hello", model="gpt-4o"),
            aigov.check(f"card {CARD}", model="gpt-4o"),
            aigov.check("ann@corp.example", model="gpt-4o"),
            aigov.check(f"{GITHUB}", model="gpt-4o", direction="output"),
        )
    assert ok.allowed and not blocked.allowed and blocked.reasons[0].rule == "pii.credit_card"
    assert redacted.redacted_text == "[REDACTED:email]" and not out.allowed
    async with AsyncClient(d.url, key["token"][:-8] + "AAAAAAAA") as aigov:
        with pytest.raises(Unauthorized):
            await aigov.check("hi", model="gpt-4o")
    async with AsyncClient(d.url, tight["token"]) as aigov:
        with pytest.raises(RateLimited) as e:  # the sync test may have used its one request already
            for _ in range(2):
                await aigov.check("hi", model="gpt-4o")
    assert e.value.retry_after > 0
    async with AsyncClient(d.url, key["token"]) as aigov:
        with pytest.raises(AigovClientError) as bad:
            await aigov.check("hi", model="")
        assert bad.value.status == 422


async def test_async_stopped_daemon_closed_raises_open_degrades() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncClient(url, "aigov_x") as aigov:
        with pytest.raises(Unavailable, match="is `aigov serve` running"):
            await aigov.check("hi", model="gpt-4o")
    async with AsyncClient(url, "aigov_x", on_error="open") as aigov:
        assert (await aigov.check("hi", model="gpt-4o")).degraded


async def test_async_timeout_and_5xx(stub: Callable[..., Stub]) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    slow = stub(hang)
    async with AsyncClient(slow.url(), "t", timeout=0.2) as aigov:
        with pytest.raises(Unavailable, match="timed out"):
            await aigov.check("hi", model="m")
    down = stub(reply(500, {"error": {"code": "internal", "message": "internal error"}}))
    async with AsyncClient(down.url(), "t", on_error="open") as aigov:
        assert (await aigov.check("hi", model="m")).degraded


def test_async_restarted_daemon_costs_one_retry(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    key = create_key(home, "restart")
    port = free_port()

    async def go(aigov: AsyncClient) -> bool:
        return (await aigov.check("hi", model="gpt-4o")).allowed

    loop = asyncio.new_event_loop()
    try:
        aigov = AsyncClient(f"http://127.0.0.1:{port}", key["token"])
        with running_daemon(home, port=port, AIGOV_BCRYPT_COST="10") as d:
            assert loop.run_until_complete(go(aigov))
            d.stop()
            with running_daemon(home, port=port, AIGOV_BCRYPT_COST="10"):
                assert loop.run_until_complete(go(aigov))
        loop.run_until_complete(aigov.aclose())
    finally:
        loop.close()


def test_the_client_imports_nothing_of_the_daemon() -> None:
    code = ("import sys, aigov_cli.client; "
            "bad = [m for m in sys.modules if m == 'daemon' or m.startswith('daemon.')]; "
            "assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_socket_left_listening_but_never_accepting_is_a_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
        with Client(url, "t", timeout=0.2) as aigov, pytest.raises(Unavailable, match="timed out"):
            aigov.check("hi", model="m")


# --- what is aigov's answer, and what is not -----------------------------------------------

SECRET = "PROMPT-ECHO-7f3a"  # a stand-in for a body that echoes the text checked: never in a message


def raw(status: int, body: str, ctype: str, headers: dict[str, str] | None = None) -> Callable[..., web.Response]:
    return lambda request: web.Response(status=status, body=body.encode(), headers={"Content-Type": ctype,
                                                                                      **(headers or {})})


def check_both(url: str, **kwargs: Any) -> list[CheckResult | AigovClientError]:
    """One check with the sync client and one with the async client: each one's result or error."""
    out: list[CheckResult | AigovClientError] = []
    with Client(url, "t", **kwargs) as aigov:
        try:
            out.append(aigov.check("hi", model="m"))
        except AigovClientError as e:
            out.append(e)

    async def run() -> None:
        async with AsyncClient(url, "t", **kwargs) as aigov:
            try:
                out.append(await aigov.check("hi", model="m"))
            except AigovClientError as e:
                out.append(e)

    asyncio.run(run())
    return out


@pytest.mark.parametrize(("status", "body", "ctype", "says"), [
    (404, f"<html>Not Found: {SECRET}</html>", "text/html", "HTTP 404 (text/html), not as aigov does"),
    (400, json.dumps({"error": f"bad thing {SECRET}"}), "application/json", "HTTP 400 (application/json)"),
    (401, f"<html>proxy login {SECRET}</html>", "text/html; charset=utf-8", "HTTP 401 (text/html)"),
    (200, json.dumps(ALLOW), "text/plain", "HTTP 200 (text/plain)"),
    (200, f"{{not json {SECRET}", "application/json", "HTTP 200 (application/json), not as aigov does: not JSON"),
    (200, json.dumps({"result": SECRET}), "application/json", "allowed is not true or false"),
    (502, f"<html>bad gateway {SECRET}</html>", "text/html", "HTTP 502 (text/html)"),
])
def test_an_answer_not_aigovs_is_unavailable_and_never_quoted(
    stub: Callable[..., Stub], status: int, body: str, ctype: str, says: str
) -> None:
    s = stub(raw(status, body, ctype))
    for error in check_both(s.url()):
        assert isinstance(error, Unavailable) and error.status == status and error.code is None
        assert says in str(error) and SECRET not in str(error)
    assert all(isinstance(r, CheckResult) and r.degraded for r in check_both(s.url(), on_error="open"))


def test_aigovs_own_errors_keep_their_kinds(stub: Callable[..., Stub]) -> None:
    def error(status: int, code: str) -> str:
        return json.dumps({"error": {"code": code, "message": f"the {code} message"}})

    for status, code, kind in [(401, "unauthorized", Unauthorized), (422, "validation_error", AigovClientError),
                               (404, "not_found", AigovClientError), (503, "unavailable", Unavailable)]:
        s = stub(raw(status, error(status, code), "application/json; charset=utf-8"))
        for e in check_both(s.url()):
            assert type(e) is kind and isinstance(e, AigovClientError)
            assert e.status == status and e.code == code and f"the {code} message" in str(e)


@pytest.mark.parametrize(("header", "seconds"), [("7", 7.0), ("-5", 1.0), ("nan", 1.0), ("inf", 1.0),
                                                 ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0), (None, 1.0)])
def test_retry_after_is_finite_and_not_negative(stub: Callable[..., Stub], header: str | None,
                                                seconds: float) -> None:
    body = json.dumps({"error": {"code": "rate_limited", "message": "slow down"}})
    s = stub(raw(429, body, "application/json", {"Retry-After": header} if header is not None else None))
    for e in check_both(s.url()):
        assert isinstance(e, RateLimited) and e.retry_after == seconds


def test_redirects_are_never_followed(stub: Callable[..., Stub]) -> None:
    elsewhere = stub(reply(200, ALLOW))
    away = stub(raw(307, "", "text/plain", {"Location": elsewhere.url() + "/v1/check?x=1"}))
    for e in check_both(away.url()):
        assert isinstance(e, Unavailable) and e.status == 307
        assert f"redirects to {elsewhere.url()} (HTTP 307)" in str(e) and "use the final URL" in str(e)
    assert elsewhere.seen == []  # the text never reached the other origin
    found = stub(raw(302, "", "text/html", {"Location": elsewhere.url() + "/v1/check"}))
    assert all(isinstance(e, Unavailable) and "(HTTP 302)" in str(e) for e in check_both(found.url()))
    loop = stub(raw(308, "", "text/plain", {"Location": "/v1/check"}))  # same origin, for ever
    for e in check_both(loop.url()):
        assert isinstance(e, Unavailable) and "redirects to itself (HTTP 308)" in str(e) and "aigov daemon?" in str(e)
    assert len(loop.seen) == 2 and elsewhere.seen == []  # one request per client, none followed
    assert all(isinstance(r, CheckResult) and r.degraded for r in check_both(loop.url(), on_error="open"))


@pytest.mark.parametrize(("change", "says"), [
    ({"decision": "block"}, "decision contradicts allowed"),
    ({"allowed": False}, "decision contradicts allowed"),
    ({"decision": "maybe"}, "decision is not 'allow' or 'block'"),
    ({"allowed": "yes"}, "allowed is not true or false"),
    ({"request_id": 7}, "request_id is not a string"),
    ({"reasons": None}, "reasons is not a list"),
    ({"reasons": ["x"]}, "reasons[0] is not an object"),
    ({"reasons": [{"rule": "r", "detector": "d", "action": "monitor", "message": "m", "start": "zz"}]},
     "reasons[0].start is not a character offset"),
    ({"reasons": [{"rule": "r", "detector": "d", "action": "monitor", "message": "m", "end": True}]},
     "reasons[0].end is not a character offset"),
    ({"reasons": [{"rule": "r", "detector": "d", "action": "monitor", "message": "m", "start": -1}]},
     "reasons[0].start is not a character offset"),
    ({"reasons": [{"rule": "r", "detector": "d", "action": "monitor", "message": "m", "start": 5, "end": 2}]},
     "reasons[0].start is after its end"),
    ({"reasons": [{"rule": "r", "detector": 3, "action": "monitor", "message": "m"}]},
     "reasons[0].detector is not a string"),
    ({"reasons": [{"rule": "r", "detector": "d", "message": "m"}]}, "reasons[0].action is missing"),
    ({"redacted_text": 5}, "redacted_text is not a string or null"),
    ({"policy": "default"}, "policy is not an object"),
    ({"policy": {"name": 1, "version": "abc"}}, "policy.name is not a string"),
])
def test_a_contradictory_or_mistyped_decision_is_refused(change: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError) as e:
        CheckResult.from_json({**ALLOW, **change})
    assert says in str(e.value)


def test_a_decision_with_every_field_typed(stub: Callable[..., Stub]) -> None:
    reason = {"rule": "r", "detector": "email", "action": "redact", "message": "m", "start": 0, "end": 3}
    data = {**ALLOW, "reasons": [reason, {**reason, "start": None, "end": None}], "redacted_text": "[x]"}
    assert CheckResult.from_json(data).reasons == (Reason("r", "email", "redact", "m", 0, 3),
                                                   Reason("r", "email", "redact", "m"))
    assert CheckResult.from_json({**ALLOW, "policy": None}).policy is None
    s = stub(raw(200, json.dumps({**ALLOW, "decision": "block"}), "application/json"))
    for e in check_both(s.url()):  # an invalid decision over HTTP: not aigov's answer
        assert isinstance(e, Unavailable) and "decision contradicts allowed" in str(e)


# --- an AsyncClient on a second event loop -------------------------------------------------


def test_an_async_client_on_a_second_event_loop_says_so(stub: Callable[..., Stub]) -> None:
    s = stub(reply(200, ALLOW))
    aigov = AsyncClient(s.url(), "t", on_error="open")
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(aigov.check("hi", model="m")).allowed
        with pytest.raises(EventLoopMismatch, match="first used on another one") as e:
            asyncio.run(aigov.check("hi", model="m"))  # not degraded: a mistake, not an outage
        assert isinstance(e.value, AigovClientError) and not isinstance(e.value, Unavailable)
        first.run_until_complete(aigov.aclose())
    finally:
        first.close()

    again = AsyncClient(s.url(), "t")
    assert asyncio.run(again.check("hi", model="m")).allowed  # the first asyncio.run() closes its loop
    with pytest.raises(EventLoopMismatch, match="first used on a closed one"):
        asyncio.run(again.check("hi", model="m"))
    # The first loop's connections cannot be closed from another: aclose() drops them, without an error.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        asyncio.run(again.aclose())
        gc.collect()


# --- TLS: advice that fits the cause -------------------------------------------------------


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for the name other.example only (not 127.0.0.1): (ca, cert, key)."""
    if not shutil.which("openssl"):
        pytest.skip("the openssl command is not installed (needed to make a test certificate)")
    d = tmp_path_factory.mktemp("ca")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]  # EC: fast to make
    (d / "ext").write_text("subjectAltName=DNS:other.example\n")
    for args in (
        ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=aigov test CA"],
        ["req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=other.example"],
        ["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "leaf.pem", "-days", "2", "-extfile", "ext"],
    ):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    return d / "ca.pem", d / "leaf.pem", d / "leaf.key"


def tls_stub(stub: Callable[..., Stub], cert: Path, key: Path) -> Stub:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return stub(reply(200, ALLOW), ssl_context=ctx)


def test_tls_a_name_mismatch_is_not_blamed_on_the_ca(stub: Callable[..., Stub],
                                                      other_ca: tuple[Path, Path, Path]) -> None:
    ca, cert, key = other_ca
    s = tls_stub(stub, cert, key)
    for e in check_both(s.url("https"), ca_file=str(ca)):
        assert isinstance(e, Unavailable)
        assert "TLS certificate is not for 127.0.0.1" in str(e) and "IP address mismatch" in str(e)
        assert "subjectAltName" in str(e) and "ca_file" not in str(e) and "AIGOV_CA_FILE" not in str(e)


def test_tls_a_given_ca_that_did_not_sign_it_is_named(stub: Callable[..., Stub], tls: tuple[Path, Path],
                                                      other_ca: tuple[Path, Path, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ca = other_ca[0]
    s = tls_stub(stub, *tls)  # self-signed for 127.0.0.1: the name fits, the CA does not
    for e in check_both(s.url("https"), ca_file=str(ca)):
        assert isinstance(e, Unavailable) and f"the CA of ca_file={str(ca)!r} did not sign it" in str(e)
        assert "pass ca_file=" not in str(e)
    monkeypatch.setenv("AIGOV_CA_FILE", str(ca))
    for e in check_both(s.url("https")):
        assert isinstance(e, Unavailable) and f"the CA of AIGOV_CA_FILE={str(ca)!r} did not sign it" in str(e)
    monkeypatch.delenv("AIGOV_CA_FILE")
    for e in check_both(s.url("https")):  # no CA given: then the advice is to give one
        assert isinstance(e, Unavailable) and "pass ca_file= or set AIGOV_CA_FILE" in str(e)
