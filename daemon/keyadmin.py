"""Key administration as library calls, for the CLI and the load tester.

The async functions take an open :class:`KeyStore`; the sync wrappers open the
configured database themselves and must not be called from a running event loop.
bcrypt hashing runs in a worker thread so these are safe inside one too.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections.abc import Awaitable, Callable
from typing import TypeVar

from daemon import tokens
from daemon.auth import hash_secret
from daemon.config import Config, load_config
from daemon.errors import ConfigError, NotFoundError
from daemon.policy.loader import load_policy_file
from daemon.storage import open_key_store
from daemon.storage.interface import KeyRecord, KeyStore

T = TypeVar("T")


async def with_store(config: Config, fn: Callable[[KeyStore], Awaitable[T]]) -> T:
    """Open the configured key store, run ``fn`` with it, close it."""
    store = await open_key_store(config)
    try:
        return await fn(store)
    finally:
        await store.close()


def check_policy_name(config: Config, policy: str) -> None:
    """ConfigError unless the policy file defines ``policy``."""
    names = load_policy_file(config.policy_path).names
    if policy not in names:
        raise ConfigError(f"unknown policy {policy!r} (the policy file defines: {', '.join(names)})")


def check_key_name(name: str, option: str = "--name") -> None:
    """ConfigError for a name that tables could not show as one plain line: empty, too long, or with
    control characters (a newline or an escape sequence would forge rows or recolour the terminal)."""
    if not name.strip() or len(name) > 128:
        raise ConfigError(f"{option} must be 1 to 128 characters")
    bad = next((c for c in name if unicodedata.category(c) == "Cc" or c in "\u2028\u2029"), None)
    if bad is not None:
        raise ConfigError(f"{option} must not hold control characters (found U+{ord(bad):04X})")


def check_key_id(key_id: str) -> None:
    """NotFoundError for something that cannot be a key id (no database needed)."""
    if not tokens.is_valid_key_id(key_id):
        raise NotFoundError(f"no key with id {key_id!r} (a key id is 12 characters of a-z and 2-7)")


async def create(
    store: KeyStore, config: Config, *, name: str, limit: int, window: float,
    expires_in: float | None = None, policy: str = "default",
) -> tuple[KeyRecord, str]:
    """Create a key; returns its record and its token (shown once)."""
    key_id = tokens.new_key_id()
    token = tokens.make_token(key_id, tokens.new_secret())
    digest = await asyncio.to_thread(hash_secret, token, config.bcrypt_cost)
    expires_at = time.time() + expires_in if expires_in else None
    rec = await store.create(name, digest, limit, window, expires_at, policy, key_id=key_id)
    return rec, token


async def rotate(store: KeyStore, config: Config, key_id: str, grace: float | None) -> tuple[KeyRecord, str]:
    """Give a key a new secret; the old token stays valid for ``grace`` seconds."""
    check_key_id(key_id)
    token = tokens.make_token(key_id, tokens.new_secret())
    digest = await asyncio.to_thread(hash_secret, token, config.bcrypt_cost)
    now = time.time()
    rec = await store.rotate(key_id, digest, now + grace if grace else None, now)
    return rec, token


def create_key(
    name: str, limit: int, window_seconds: float, expires_in_seconds: float | None = None,
    policy: str = "default", config: Config | None = None,
) -> tuple[str, str]:
    """Create a key in the configured database; returns (key_id, token)."""
    cfg = config or load_config()

    async def go(store: KeyStore) -> tuple[KeyRecord, str]:
        return await create(store, cfg, name=name, limit=limit, window=window_seconds,
                            expires_in=expires_in_seconds, policy=policy)

    rec, token = asyncio.run(with_store(cfg, go))
    return rec.key_id, token


def revoke_key(key_id: str, config: Config | None = None) -> bool:
    """Revoke a key in the configured database; False when there is no such key."""
    cfg = config or load_config()

    async def go(store: KeyStore) -> bool:
        try:
            await store.revoke(key_id, time.time())
        except NotFoundError:
            return False
        return True

    return asyncio.run(with_store(cfg, go))


def delete_key(key_id: str, config: Config | None = None) -> bool:
    """Delete a key from the configured store (a temporary key, at the end of its run); False when
    there is no such key. A running daemon refuses it within a second, as after a revocation."""
    cfg = config or load_config()

    async def go(store: KeyStore) -> bool:
        try:
            await store.delete(key_id)
        except NotFoundError:
            return False
        return True

    return asyncio.run(with_store(cfg, go))
