"""Temporary API keys for a run: created with limits fit for the mode, always revoked at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Protocol


class KeyAdminError(RuntimeError):
    """Temporary keys could not be created or revoked."""


class KeyAdmin(Protocol):
    """Creates and revokes keys in the daemon's home."""

    def create(self, name: str, limit: int, window_s: float, expires_in_s: float) -> tuple[str, str]:
        """Create a key and return ``(key_id, token)``."""
        ...

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; True if it existed."""
        ...


class LibraryKeyAdmin:
    """Uses ``daemon.keyadmin`` in-process (the home comes from ``AIGOV_HOME`` / config)."""

    def create(self, name: str, limit: int, window_s: float, expires_in_s: float) -> tuple[str, str]:
        """Create a key through the daemon library."""
        from daemon.keyadmin import create_key

        key_id, token = create_key(name, limit, window_s, expires_in_seconds=expires_in_s)
        return str(key_id), str(token)

    def revoke(self, key_id: str) -> bool:
        """Revoke a key through the daemon library."""
        from daemon.keyadmin import revoke_key

        return bool(revoke_key(key_id))


class CliKeyAdmin:
    """Runs ``aigov keys create/revoke`` as subprocesses (when the library is not importable)."""

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "aigov_cli.main", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=os.environ.copy())

    def create(self, name: str, limit: int, window_s: float, expires_in_s: float) -> tuple[str, str]:
        """Create a key with ``aigov keys create --json``."""
        proc = self._run(
            "keys",
            "create",
            "--name",
            name,
            "--rate-limit",
            f"{limit}/{int(window_s)}s",
            "--expires-in",
            f"{int(expires_in_s)}s",
            "--json",
        )
        if proc.returncode != 0:
            raise KeyAdminError(proc.stderr.strip() or "aigov keys create failed")
        data = json.loads(proc.stdout)
        return str(data["key_id"]), str(data["token"])

    def revoke(self, key_id: str) -> bool:
        """Revoke a key with ``aigov keys revoke``."""
        return self._run("keys", "revoke", key_id).returncode == 0


def default_key_admin() -> KeyAdmin:
    """The library admin when ``daemon.keyadmin`` exists, else the CLI fallback."""
    try:
        import daemon.keyadmin  # noqa: F401
    except ImportError:
        return CliKeyAdmin()
    return LibraryKeyAdmin()


@dataclass
class TempKeys:
    """Keys created for one run; :meth:`revoke_all` is idempotent and never raises."""

    admin: KeyAdmin
    created: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def create(self, name: str, limit: int, window_s: float, expires_in_s: float) -> str:
        """Create a key, remember it for revocation, and return its token."""
        try:
            key_id, token = self.admin.create(name, limit, window_s, expires_in_s)
        except KeyAdminError:
            raise
        except Exception as exc:  # the key library's own errors, whatever they are
            raise KeyAdminError(f"cannot create a temporary key: {exc}") from exc
        self.created.append(key_id)
        return token

    def revoke_all(self) -> None:
        """Revoke every key created so far."""
        for key_id in self.created:
            if key_id in self.revoked:
                continue
            try:
                self.admin.revoke(key_id)
                self.revoked.append(key_id)
            except Exception as exc:  # keep revoking the others
                self.failures.append(f"{key_id}: {exc}")
