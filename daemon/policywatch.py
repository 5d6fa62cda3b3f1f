"""Reload the policy when its file changes (``policy_watch_interval``), as SIGHUP does.

For files that change under a running daemon without anyone sending a signal: a Kubernetes
ConfigMap mounted as a directory is swapped atomically by the kubelet (a new ``..data`` link), a
configuration-management tool rewrites the file. The file is looked at with ``stat`` in a worker
thread every interval (never on the event loop); a change of inode, size or modification time
triggers the same validated reload as SIGHUP, so an invalid file keeps the old policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Protocol

from aiohttp import web

from daemon.errors import AigovError

log = logging.getLogger("aigov")

Signature = tuple[int, int, int, int] | None


class _Versioned(Protocol):
    @property
    def version(self) -> str:
        """The loaded policy's version."""


def signature(path: Path) -> Signature:
    """What identifies one version of the file on disk (following links); None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


async def watch(path: Path, interval: float, reload: Callable[[], Awaitable[_Versioned]],
                current: Callable[[], str]) -> None:
    """Poll ``path`` every ``interval`` seconds and call ``reload`` when it changed; runs until cancelled."""
    last = await asyncio.to_thread(signature, path)
    while True:
        await asyncio.sleep(interval)
        now = await asyncio.to_thread(signature, path)
        if now == last:
            continue
        last = now
        before = current()
        try:
            new = await reload()
        except AigovError as e:
            log.error("policy file %s changed but cannot be used, keeping version %s: %s", path, before, e)
            continue
        if new.version != before:
            log.info("policy file %s changed: now version %s", path, new.version)


def policy_watch_ctx(
    path: Path, interval: float, reload: Callable[[], Awaitable[_Versioned]], current: Callable[[], str]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs :func:`watch` for the application's life."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(watch(path, interval, reload, current), name="aigov-policy-watch")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return ctx


__all__ = ["policy_watch_ctx", "signature", "watch"]
