"""HTTPS: tls_cert / tls_key, the daemon over TLS, the CLI's pinned client, loadtest with a CA file.

Certificates are made here with the openssl command: a private CA and a leaf it signed for
``localhost`` and 127.0.0.1, so that both "verify with a CA file" and "pin the configured leaf"
are exercised.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import signal
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.config import load_config
from daemon.errors import ConfigError
from daemon.tls import client_context, server_context
from tests.daemon_proc import AIGOV, cli, env_for, free_port

pytestmark = pytest.mark.e2e
BODY = {"model": "gpt-4o", "operation": "chat", "input_text": "What is the capital of France?"}


@dataclass(frozen=True)
class Certs:
    """A CA, a leaf it signed for localhost, and odd files for the error cases."""

    ca: Path
    cert: Path
    key: Path
    other_key: Path
    encrypted_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Certificates made with the openssl command (the test skips without it)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make test certificates")
    d = tmp_path_factory.mktemp("certs")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=aigov test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    _openssl("req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "leaf.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext", cwd=d)
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-out", "other.key", cwd=d)
    _openssl("pkey", "-in", "leaf.key", "-aes256", "-passout", "pass:secret", "-out", "enc.key", cwd=d)
    for f in d.iterdir():
        f.chmod(0o600)
    return Certs(d / "ca.pem", d / "leaf.pem", d / "leaf.key", d / "other.key", d / "enc.key")


# -- configuration ----------------------------------------------------------------------------


def test_cert_without_key_is_a_config_error(home: Path) -> None:
    with pytest.raises(ConfigError, match="tls_cert is set but tls_key is not"):
        load_config(env={"AIGOV_HOME": str(home), "AIGOV_TLS_CERT": "/x.pem"})
    with pytest.raises(ConfigError, match="tls_key is set but tls_cert is not"):
        load_config(env={"AIGOV_HOME": str(home), "AIGOV_TLS_KEY": "/x.key"})


def test_tls_makes_the_url_https(home: Path) -> None:
    cfg = load_config(env={"AIGOV_HOME": str(home), "AIGOV_TLS_CERT": "/c.pem", "AIGOV_TLS_KEY": "/k.pem"})
    assert cfg.tls and cfg.url == "https://127.0.0.1:8080"
    assert load_config(env={"AIGOV_HOME": str(home)}).url == "http://127.0.0.1:8080"


def test_server_context_is_tls12_or_later(certs: Certs) -> None:
    ctx = server_context(str(certs.cert), str(certs.key))
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("missing_cert", "tls_cert: cannot read"),
        ("missing_key", "tls_key: cannot read"),
        ("wrong_key", "the key must belong to the certificate"),
        ("encrypted_key", "tls_key is encrypted"),
        ("key_as_cert", "tls_cert/tls_key: cannot load"),
    ],
)
def test_bad_tls_files_stop_serve_with_one_line(home: Path, certs: Certs, which: str, message: str) -> None:
    cert, key = str(certs.cert), str(certs.key)
    match which:
        case "missing_cert":
            cert = str(certs.cert.parent / "nope.pem")
        case "missing_key":
            key = str(certs.cert.parent / "nope.key")
        case "wrong_key":
            key = str(certs.other_key)
        case "encrypted_key":
            key = str(certs.encrypted_key)
        case "key_as_cert":
            cert = str(certs.key)
    r = cli(home, "serve", "--port", str(free_port()), AIGOV_TLS_CERT=cert, AIGOV_TLS_KEY=key, timeout=30)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("aigov: error: ") and message in lines[-1], r.stderr
    assert "Traceback" not in r.stderr


# -- a real daemon over TLS -------------------------------------------------------------------


@dataclass
class TlsDaemon:
    """A running ``aigov serve`` with tls_cert / tls_key."""

    home: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def request(self, method: str, path: str, ctx: ssl.SSLContext, body: bytes | None = None,
                headers: dict[str, str] | None = None, host: str = "localhost") -> tuple[int, bytes, str]:
        """One HTTPS request; returns status, body and the negotiated TLS version."""
        c = http.client.HTTPSConnection(host, self.port, timeout=10, context=ctx)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            assert c.sock is not None
            version = c.sock.version()  # type: ignore[attr-defined]
            return r.status, r.read(), str(version)
        finally:
            c.close()


@contextlib.contextmanager
def tls_daemon(home: Path, certs: Certs, *extra: str, host: str = "127.0.0.1") -> Iterator[TlsDaemon]:
    """``aigov serve`` over HTTPS on a free port, polled until /healthz answers."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "serve.log"
    env = env_for(home, AIGOV_TLS_CERT=str(certs.cert), AIGOV_TLS_KEY=str(certs.key), AIGOV_BCRYPT_COST="10")
    with open(log, "wb") as out:
        proc = subprocess.Popen([AIGOV, "serve", "--host", host, "--port", str(port), *extra],
                                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    d = TlsDaemon(home, port, proc, log)
    ctx = client_context(ca_file=str(certs.ca))
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"aigov serve exited {proc.returncode}: {log.read_text()[-500:]}")
            try:
                if d.request("GET", "/healthz", ctx)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"no HTTPS answer within 20 s: {log.read_text()[-500:]}")
            time.sleep(0.05)
        yield d
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def test_daemon_serves_https_and_the_cli_follows(tmp_path: Path, certs: Certs) -> None:
    home = tmp_path / "home"
    with tls_daemon(home, certs) as d:
        ca = client_context(ca_file=str(certs.ca))
        made = cli(home, "keys", "create", "--name", "tls", "--rate-limit", "10000/1m", "--json",
                   AIGOV_BCRYPT_COST="10")
        key = json.loads(made.stdout)
        status, body, version = d.request(
            "POST", "/v1/check", ca, json.dumps(BODY).encode(),
            {"Authorization": f"Bearer {key['token']}", "Content-Type": "application/json"},
        )
        assert status == 200 and json.loads(body)["decision"] == "allow"
        assert version in ("TLSv1.2", "TLSv1.3")

        # TLS 1.2 is accepted; anything older is refused by the server, not only by our client.
        only12 = client_context(ca_file=str(certs.ca))
        only12.maximum_version = ssl.TLSVersion.TLSv1_2
        assert d.request("GET", "/healthz", only12)[2] == "TLSv1.2"
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is: that is the point
            old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises(ssl.SSLError, match="EOF|protocol version"):  # the server hangs up or alerts
            d.request("GET", "/healthz", old)

        # Plain HTTP on the TLS port gets no answer.
        plain = http.client.HTTPConnection("127.0.0.1", d.port, timeout=5)
        with pytest.raises((http.client.HTTPException, OSError)):
            plain.request("GET", "/healthz")
            plain.getresponse().read()
        plain.close()

        env = {"AIGOV_TLS_CERT": str(certs.cert), "AIGOV_TLS_KEY": str(certs.key)}
        st = cli(home, "status", "--json", **env)
        assert st.returncode == 0, st.stderr
        info = json.loads(st.stdout)
        assert info["url"] == f"https://127.0.0.1:{d.port}" and info["ready"] is True

        # The same daemon, found through the pid file without --url: the configured certificate is trusted.
        key_args = ("--key", key["token"])  # no temporary keys: the run is about the transport
        lt = cli(home, "loadtest", *key_args, "--rate", "40", "--duration", "1s", "--json", **env)
        assert lt.returncode == 0, lt.stderr
        doc = json.loads(lt.stdout)
        assert doc["target"]["url"].startswith("https://") and doc["requests"]["ok"] > 0

        url = f"https://localhost:{d.port}"
        lt = cli(home, "loadtest", *key_args, "--url", url, "--ca-file", str(certs.ca), "--rate", "40",
                 "--duration", "1s", "--json", **env)
        assert lt.returncode == 0, lt.stderr
        assert json.loads(lt.stdout)["requests"]["errors"] == 0

        lt = cli(home, "loadtest", *key_args, "--url", url, "--rate", "40", "--duration", "1s", **env)
        assert lt.returncode == 2 and "did not verify" in lt.stderr and "--ca-file" in lt.stderr, lt.stderr
        lt = cli(home, "loadtest", *key_args, "--url", url, "--ca-file", str(certs.cert), "--rate", "40",
                 "--duration", "1s", **env)  # a CA file that holds no CA of this certificate
        assert lt.returncode == 2 and f"--ca-file {certs.cert} did not sign it" in lt.stderr, lt.stderr
        lt = cli(home, "loadtest", *key_args, "--url", f"http://127.0.0.1:{d.port}", "--rate", "40",
                 "--duration", "1s", **env)
        assert lt.returncode == 2 and "use an https:// URL" in lt.stderr, lt.stderr

        au = cli(home, "audit", "--json", "--skip-deps", **env)
        ids = {f["id"] for f in json.loads(au.stdout)["findings"]}
        assert "AG702" not in ids and "AG201" not in ids, au.stdout
        assert "https://" in d.log.read_text()


@contextlib.contextmanager
def plain_daemon(home: Path, host: str) -> Iterator[Path]:
    """``aigov serve --host HOST`` without TLS until it says it listens; yields its log file."""
    log = home / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([AIGOV, "serve", "--host", host, "--port", str(free_port())], stdout=out,
                                stderr=subprocess.STDOUT, env=env_for(home), start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while "listening on" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_plain_http_beyond_loopback_warns_and_audit_reports_it(home: Path) -> None:
    with plain_daemon(home, "0.0.0.0") as log:
        text = log.read_text()
        assert "WARNING" in text and "without TLS" in text and "0.0.0.0" in text
        au = cli(home, "audit", "--json", "--skip-deps", "--fail-on", "critical")
        bind = [f for f in json.loads(au.stdout)["findings"] if f["id"] == "AG201"]
        assert bind and bind[0]["severity"] == "medium" and "every interface" in bind[0]["evidence"]


def test_loopback_without_tls_does_not_warn(home: Path) -> None:
    with plain_daemon(home, "127.0.0.1") as log:
        assert "without TLS" not in log.read_text()


def test_audit_reports_a_readable_tls_key(home: Path, certs: Certs, tmp_path: Path) -> None:
    key = tmp_path / "loose.key"
    key.write_bytes(certs.key.read_bytes())
    key.chmod(0o644)
    env = {"AIGOV_TLS_CERT": str(certs.cert), "AIGOV_TLS_KEY": str(key), "AIGOV_HOST": "0.0.0.0"}
    au = cli(home, "audit", "--json", "--skip-deps", **env)
    found = {f["id"]: f for f in json.loads(au.stdout)["findings"]}
    assert found["AG202"]["severity"] == "medium" and "0644" in found["AG202"]["evidence"]
    assert "AG201" not in found  # beyond loopback, but with TLS
