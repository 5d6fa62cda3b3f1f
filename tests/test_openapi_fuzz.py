"""The public API against its own OpenAPI document: schemathesis, every check, a real daemon.

Negative data must be refused (ST201), valid data accepted (ST202), no 500s, the answers as the
document says. Skipped with one line when schemathesis is not installed (it is in the test extras).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_proc import create_key, running_daemon

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")


@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed (pip install 'aigov[test]')")
def test_the_api_keeps_what_its_openapi_document_says(home: Path) -> None:
    key = create_key(home, "fuzz", "--rate-limit", "1000000/1h")
    with running_daemon(home) as d:
        assert SCHEMATHESIS is not None
        r = subprocess.run(
            [SCHEMATHESIS, "run", f"{d.url}/openapi.json", "--checks", "all", "--max-examples", "150",
             "--seed", "1", "-H", f"Authorization: Bearer {key['token']}", "--no-color"],
            capture_output=True, text=True, timeout=300, cwd=home,  # its cache goes in the test's home
        )
        assert "Traceback" not in d.output()
    assert r.returncode == 0, r.stdout[-4000:]
    assert " passed" in r.stdout
