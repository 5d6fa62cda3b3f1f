"""End to end: a real LiteLLM proxy, configured with the README's guardrail block, in front of a local
fake upstream, asking a real ``aigov serve`` through ``/beta/litellm_basic_guardrail_api``.

LiteLLM is heavy (hundreds of MB), so it is not in the dev extras. The test runs when the
``litellm`` package is importable here, or when ``AIGOV_TEST_LITELLM`` names a ``litellm``
executable (for instance one in a venv of its own):

    python3 -m venv /tmp/litellm && /tmp/litellm/bin/pip install 'litellm[proxy]'
    AIGOV_TEST_LITELLM=/tmp/litellm/bin/litellm .venv/bin/python -m pytest tests/test_litellm_e2e.py
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.daemon_proc import create_key, free_port, running_daemon
from tests.fake_openai import DEFAULT_REPLY, FakeOpenAI
from tests.guard_policy import CARD, GITHUB, POLICY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
README = Path(__file__).resolve().parent.parent / "README.md"
MASTER_KEY = "sk-aigov-e2e-7c1d9b2e4f6a8c0e1d3f5a7b"


def litellm_command() -> list[str] | None:
    """How to start the proxy, or None when LiteLLM is not available."""
    exe = os.environ.get("AIGOV_TEST_LITELLM")
    if exe:
        return [exe]
    if importlib.util.find_spec("litellm") is None:
        return None
    found = shutil.which("litellm", path=os.path.dirname(sys.executable))
    return [found] if found else None


COMMAND = litellm_command()
if COMMAND is None:
    pytest.skip("litellm is not installed (pip install 'litellm[proxy]', or set AIGOV_TEST_LITELLM)",
                allow_module_level=True)


def readme_config() -> str:
    """The LiteLLM config.yaml block of the README (the one after the generic_guardrail_api marker)."""
    m = re.search(r"```yaml\n(model_list:.*?guardrail: generic_guardrail_api.*?)```", README.read_text(), re.S)
    assert m, "README.md has no LiteLLM config.yaml block"
    return m.group(1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """aigov, the fake upstream and a LiteLLM proxy between them; LiteLLM's base URL and the rest."""
    work = tmp_path_factory.mktemp("litellm")
    home = work / "home"
    home.mkdir(mode=0o700)
    (home / "policy.toml").write_text(POLICY)
    key = create_key(home, "litellm")
    with running_daemon(home) as aigov, FakeOpenAI() as upstream:
        config = readme_config().replace("http://127.0.0.1:8080", aigov.url)
        # The upstream is the local fake: the README's model entry gets its api_base.
        config = config.replace("model: openai/gpt-4o\n", f"model: openai/gpt-4o\n      api_base: {upstream.url}\n")
        (work / "config.yaml").write_text(config)
        port = free_port()
        env = dict(os.environ, AIGOV_TOKEN=key["token"], OPENAI_API_KEY="sk-fake", LITELLM_MASTER_KEY=MASTER_KEY,
                   LITELLM_LOCAL_MODEL_COST_MAP="True", NO_DOCS="True")
        log = work / "litellm.log"
        assert COMMAND is not None
        with open(log, "wb") as out:
            proc = subprocess.Popen([*COMMAND, "--config", str(work / "config.yaml"), "--host", "127.0.0.1",
                                     "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        try:
            deadline = time.time() + 180  # LiteLLM takes half a minute to start here
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"litellm exited {proc.returncode}: {log.read_text()[-2000:]}")
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=1).read()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise RuntimeError(f"litellm did not start: {log.read_text()[-2000:]}") from None
                    time.sleep(0.5)
            yield {"url": f"http://127.0.0.1:{port}", "upstream": upstream, "home": home}
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def client(stack: dict[str, Any]) -> Iterator[openai.OpenAI]:
    stack["upstream"].requests.clear()
    stack["upstream"].reply = DEFAULT_REPLY
    with openai.OpenAI(api_key=MASTER_KEY, base_url=stack["url"], max_retries=0) as c:
        yield c


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def decisions(home: Path) -> int:
    conn = sqlite3.connect(home / "aigov.db")
    try:
        return int(conn.execute("SELECT count(*) FROM decisions WHERE kind IS NULL OR kind != 'checkpoint'")
                   .fetchone()[0])
    finally:
        conn.close()


def test_a_benign_call_goes_through_and_is_recorded_twice(client: openai.OpenAI, stack: dict[str, Any]) -> None:
    before = decisions(stack["home"])
    r = client.chat.completions.create(model="gpt-4o", messages=user("What is the capital of France?"))
    assert r.choices[0].message.content == DEFAULT_REPLY
    assert len(stack["upstream"].requests) == 1
    deadline = time.time() + 15
    while decisions(stack["home"]) < before + 2 and time.time() < deadline:  # pre_call and post_call
        time.sleep(0.1)
    assert decisions(stack["home"]) == before + 2


def test_a_card_number_never_reaches_the_upstream(client: openai.OpenAI, stack: dict[str, Any]) -> None:
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="gpt-4o", messages=user(f"charge {CARD}"))
    assert "pii.credit_card" in str(e.value) and CARD not in str(e.value)
    assert stack["upstream"].requests == []


def test_an_email_reaches_the_upstream_redacted(client: openai.OpenAI, stack: dict[str, Any]) -> None:
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "system", "content": "be brief"},
                                                             *user("mail ann@corp.example")])
    (_, body), = stack["upstream"].requests
    assert body["messages"][-1]["content"] == "mail [REDACTED:email]"
    assert body["messages"][0]["content"] == "be brief"


def test_a_secret_in_the_answer_is_blocked(client: openai.OpenAI, stack: dict[str, Any]) -> None:
    stack["upstream"].reply = f"the token is {GITHUB}"
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="gpt-4o", messages=user("what is the token?"))
    assert "secrets.github_token" in str(e.value) and GITHUB not in str(e.value)
