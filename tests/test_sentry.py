"""Sentry: what an error report holds, with the real sentry-sdk, sent to a local endpoint that records envelopes."""

from __future__ import annotations

import contextlib
import gzip
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from daemon import __version__
from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.sentry import FILTERED, scrub_event, scrub_text
from tests.daemon_proc import env_for, free_port

sentry_sdk = pytest.importorskip("sentry_sdk", reason="sentry-sdk is not installed (pip install 'aigov[sentry]')")

CARD = "5555 5555 5555 4444"  # Luhn-valid Mastercard test number
TOKEN = "aigov_abcdefghijkl_0123456789abcdefghijklmnopqrstuv"
EMAIL = "bob@corp.example.com"  # named, so that the source lines an event carries do not hold it
CRASHING_AIGOV = Path(__file__).with_name("crashing_aigov.py")


class Recorder:
    """A local Sentry endpoint: keeps every envelope it is sent (decompressed)."""

    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        self.paths: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                recorder.envelopes.append(body)
                recorder.paths.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def dsn(self) -> str:
        """A DSN pointing at this endpoint, project 42."""
        return f"http://publickey@127.0.0.1:{self.port}/42"

    def events(self) -> list[dict[str, Any]]:
        """Every event item of every envelope."""
        out = []
        for env in self.envelopes:
            lines = env.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    out.append(json.loads(payload))
        return out

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """A running envelope recorder."""
    r = Recorder()
    yield r
    r.close()


@contextlib.contextmanager
def crashing_daemon(home: Path, dsn: str, **extra: str) -> Iterator[int]:
    """A real daemon whose policy engine crashes on ``crash-me`` and whose decision writer fails once on
    ``writer-fails`` (tests/crashing_aigov.py); yields its port."""
    port = free_port()
    log = home / "serve.log"
    env = env_for(home, AIGOV_SENTRY_DSN=dsn, AIGOV_SENTRY_ENVIRONMENT="pilot-test", **extra)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(CRASHING_AIGOV), "serve", "--port", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while "listening on" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _post(port: int, token: str, text: str) -> int:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = json.dumps({"model": "gpt-4o", "operation": "chat", "input_text": text})
        c.request("POST", "/v1/check", body, {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


@pytest.mark.e2e
def test_a_crash_on_a_prompt_with_a_card_reports_without_it(home: Path, recorder: Recorder) -> None:
    from tests.daemon_proc import create_key

    token = create_key(home, "sentry")["token"]
    prompt = f"zebra-quokka says: charge my card {CARD} and crash-me please"
    with crashing_daemon(home, recorder.dsn) as port:
        assert _post(port, token, "an ordinary question") == 200
        assert _post(port, token, prompt) == 500
        deadline = time.monotonic() + 15
        while not recorder.events() and time.monotonic() < deadline:
            time.sleep(0.05)
    events = recorder.events()
    assert events, "the daemon sent no event to the Sentry endpoint"
    assert recorder.paths[0] == "/api/42/envelope/"
    event = events[0]
    assert event["release"] == f"aigov@{__version__}" and event["environment"] == "pilot-test"
    exc = event["exception"]["values"][-1]
    assert exc["type"] == "RuntimeError"
    functions = [f["function"] for f in exc["stacktrace"]["frames"]]
    assert "handle" in functions and "_crashing_evaluate" in functions  # the frames that held the prompt
    assert all("vars" not in f for f in exc["stacktrace"]["frames"])
    raw = b"\n".join(recorder.envelopes).decode()
    # Not a bare "5555": four hex digits turn up in random event and trace ids now and then.
    for secret in (CARD, CARD.replace(" ", ""), "5555 4444", "zebra-quokka", token, token[30:]):
        assert secret not in raw, f"{secret!r} left the process"


@pytest.mark.e2e
def test_a_failing_decision_write_is_reported_without_the_prompt(home: Path, recorder: Recorder) -> None:
    from tests.daemon_proc import create_key

    token = create_key(home, "sentry")["token"]
    prompt = f"zebra-quokka writer-fails on card {CARD}"
    with crashing_daemon(home, recorder.dsn, AIGOV_LOG_FLUSH_INTERVAL="0.1") as port:
        assert _post(port, token, prompt) == 200  # answered (a block); its record is written on the retry
        deadline = time.monotonic() + 15
        while not recorder.events() and time.monotonic() < deadline:
            time.sleep(0.05)
    events = recorder.events()
    assert events, "the writer's failure was not reported"
    assert events[0]["level"] == "error" and "decision log write failed" in events[0]["logentry"]["message"]
    assert "database or disk is full" in json.dumps(events[0])
    raw = b"\n".join(recorder.envelopes).decode()
    for secret in (CARD, "zebra-quokka", token):
        assert secret not in raw, f"{secret!r} left the process"
    logs = json.loads(cli_logs(home))
    assert logs and logs[0]["decision"] == "block"  # nothing answered was lost


def cli_logs(home: Path) -> str:
    """``aigov logs --json`` as one JSON array."""
    from tests.daemon_proc import cli

    r = cli(home, "logs", "--json")
    assert r.returncode == 0, r.stderr
    return "[" + ",".join(line for line in r.stdout.splitlines() if line.strip()) + "]"


def test_scrub_event_drops_locals_request_data_and_credentials() -> None:
    # A real event from the SDK, locals included, as a bug in the check handler would produce.
    from sentry_sdk.utils import event_from_exception

    def handle(text: str, token: str) -> None:
        raise ValueError(f"could not parse {text!r} for Bearer {token}")

    try:
        handle(f"card {CARD} and mail {EMAIL}", TOKEN)
    except ValueError:
        event, _ = event_from_exception(sys.exc_info())  # no options: locals and source included
    event["request"] = {"headers": {"Authorization": f"Bearer {TOKEN}"}, "data": f"card {CARD}"}
    event["breadcrumbs"] = {"values": [{"message": f"sent X-Api-Key {TOKEN}", "category": "http"}]}
    event["extra"] = {"headers": {"X-Api-Key": TOKEN, "Accept": "application/json"}}
    assert "vars" in event["exception"]["values"][0]["stacktrace"]["frames"][-1]  # the SDK did capture them
    before = json.dumps(event)
    assert CARD in before and TOKEN in before

    out = scrub_event(event)
    after = json.dumps(out)
    assert CARD not in after and TOKEN not in after and EMAIL not in after
    assert "request" not in out and all("vars" not in f for f in out["exception"]["values"][0]["stacktrace"]["frames"])
    assert out["extra"]["headers"] == {"X-Api-Key": FILTERED, "Accept": "application/json"}
    value = out["exception"]["values"][0]["value"]
    assert "could not parse" in value and "[REDACTED:credit_card]" in value and f"Bearer {FILTERED}" in value
    assert out["exception"]["values"][0]["type"] == "ValueError"


def test_scrub_text_masks_findings_and_bounds_length() -> None:
    assert scrub_text(f"token {TOKEN} ok") == "token [aigov token] ok"
    assert "536-22-1234" not in scrub_text("ssn 536-22-1234 here")
    assert len(scrub_text("x" * 5000)) <= 1003


@pytest.mark.parametrize("dsn", ["not a url", "https://sentry.example.com/1", "ftp://key@host/1", "https://key@host/"])
def test_a_malformed_dsn_is_a_config_error_without_the_key(home: Path, dsn: str) -> None:
    with pytest.raises(ConfigError, match="sentry_dsn must look like") as e:
        load_config(env={"AIGOV_HOME": str(home), "AIGOV_SENTRY_DSN": dsn})
    assert "key@" not in str(e.value)


def test_no_dsn_means_no_sentry(home: Path) -> None:
    from daemon.sentry import init_sentry

    assert init_sentry(load_config(env={"AIGOV_HOME": str(home)})) is False
