"""policy_watch_interval: a running daemon picks up a changed policy file without a signal.

The file is laid out the way the kubelet mounts a ConfigMap: ``policy.toml -> ..data/policy.toml``
and ``..data -> ..<version dir>``, replaced by swapping the ``..data`` link atomically.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from daemon.policy.loader import default_policy_text, load_policy_file
from tests.daemon_proc import DaemonProc, running_daemon

pytestmark = pytest.mark.e2e


def publish(mount: Path, name: str, text: str) -> None:
    """Write a new version directory and point ``..data`` at it in one rename, as the kubelet does."""
    version = mount / name
    version.mkdir()
    (version / "policy.toml").write_text(text)
    tmp = mount / "..data_tmp"
    tmp.symlink_to(name)
    os.replace(tmp, mount / "..data")
    if not (mount / "policy.toml").is_symlink():
        (mount / "policy.toml").symlink_to("..data/policy.toml")


def wait_version(d: DaemonProc, want: str, limit: float = 10.0) -> str:
    deadline = time.monotonic() + limit
    while True:
        got = str(d.request("GET", "/readyz").json()["policy_version"])
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_a_swapped_configmap_reaches_the_running_daemon(home: Path, tmp_path: Path) -> None:
    mount = tmp_path / "policy"
    mount.mkdir()
    first = default_policy_text()
    publish(mount, "..v1", first)
    policy = mount / "policy.toml"
    v1 = load_policy_file(policy).version
    with running_daemon(home, AIGOV_POLICY_FILE=str(policy), AIGOV_POLICY_WATCH_INTERVAL="0.1") as d:
        assert wait_version(d, v1) == v1
        publish(mount, "..v2", first + "\n# second revision\n")
        v2 = load_policy_file(policy).version
        assert v2 != v1 and wait_version(d, v2) == v2
        publish(mount, "..v3", "[policies.default]\nmode = 'sometimes'\n")  # invalid: the old one stays
        deadline = time.monotonic() + 10
        while "cannot be used" not in d.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "cannot be used, keeping version " + v2 in d.output()
        assert d.request("GET", "/readyz").json()["policy_version"] == v2

