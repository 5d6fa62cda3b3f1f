"""Temporary API keys for a run: created with limits fit for the mode, always deleted at the end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Protocol


class KeyAdminError(RuntimeError):
    """Temporary keys could not be created or deleted."""


class KeyAdmin(Protocol):
    """Creates and deletes keys in the daemon's home."""

    def create(self, name: str, limit: int, window_s: float, expires_in_s: float) -> tuple[str, str]:
        """Create a key and return ``(key_id, token)``."""
        ...

    def delete(self, key_id: str) -> bool:
        """Delete a key; True if it existed."""
        ...


class LibraryKeyAdmin:
    """Uses ``daemon.keyadmin`` in-process (the home comes from ``AIGOV_HOME`` / config)."""

    def create(self, name: str, limit: int, window_s: float, expires_in_s: float) -> tuple[str, str]:
        """Create a key through the daemon library."""
        from daemon.keyadmin import create_key

        key_id, token = create_key(name, limit, window_s, expires_in_seconds=expires_in_s)
        return str(key_id), str(token)

    def delete(self, key_id: str) -> bool:
        """Delete a key through the daemon library."""
        from daemon.keyadmin import delete_key

        return bool(delete_key(key_id))


class CliKeyAdmin:
    """Runs ``aigov keys create/delete`` as subprocesses (when the library is not importable)."""

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

    def delete(self, key_id: str) -> bool:
        """Delete a key with ``aigov keys delete``."""
        return self._run("keys", "delete", key_id).returncode == 0


def default_key_admin() -> KeyAdmin:
    """The library admin when ``daemon.keyadmin`` exists, else the CLI fallback."""
    try:
        import daemon.keyadmin  # noqa: F401
    except ImportError:
        return CliKeyAdmin()
    return LibraryKeyAdmin()


@dataclass
class TempKeys:
    """Keys created for one run; :meth:`delete_all` is idempotent and never raises."""

    admin: KeyAdmin
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def create(self, name: str, limit: int, window_s: float, expires_in_s: float) -> str:
        """Create a key, remember it for deletion, and return its token."""
        try:
            key_id, token = self.admin.create(name, limit, window_s, expires_in_s)
        except KeyAdminError:
            raise
        except Exception as exc:  # the key library's own errors, whatever they are
            raise KeyAdminError(f"cannot create a temporary key: {exc}") from exc
        self.created.append(key_id)
        return token

    def delete_all(self) -> None:
        """Delete every key created so far (not just revoke it: a run leaves no keys behind)."""
        for key_id in self.created:
            if key_id in self.deleted:
                continue
            try:
                self.admin.delete(key_id)
                self.deleted.append(key_id)
            except Exception as exc:  # keep deleting the others
                self.failures.append(f"{key_id}: {exc}")
