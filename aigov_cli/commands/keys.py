"""``aigov keys``: create, list, show, revoke, rotate and update API keys."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aigov_cli.output import Column, console, iso, print_json, print_table, printable
from aigov_cli.output import config as load_cfg

if TYPE_CHECKING:
    from daemon.storage.interface import KeyRecord, KeyStore

app = typer.Typer(help="Create, list, show, update, rotate, revoke and delete API keys.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
KeyIdArg = Annotated[str, typer.Argument(help="The key id (the middle part of the token).", metavar="KEY_ID")]


def _rate(text: str | None) -> tuple[int, float] | None:
    from daemon.errors import ConfigError
    from daemon.units import parse_rate

    if text is None:
        return None
    try:
        return parse_rate(text)
    except ValueError as e:
        raise ConfigError(f"--rate-limit: {e}") from None


def _duration(option: str, text: str | None) -> float | None:
    from daemon.errors import ConfigError
    from daemon.units import parse_duration

    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as e:
        raise ConfigError(f"{option}: {e}") from None


def key_json(rec: KeyRecord, now: float | None = None) -> dict[str, Any]:
    """The public JSON form of a key (no secrets)."""
    d = rec.public(now)
    for k in ("created_at", "expires_at", "revoked_at", "rotated_at", "last_used_at", "grace_until"):
        d[k] = iso(d[k])
    return d


def _day(iso_time: str | None) -> str | None:
    """``2026-11-27T12:35:38Z`` as ``2026-11-27``."""
    return iso_time[:10] if iso_time else None


def _run(fn: Any) -> Any:
    import asyncio

    from daemon.keyadmin import with_store

    cfg = load_cfg()
    return cfg, asyncio.run(with_store(cfg, lambda store: fn(store, cfg)))


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A name to recognise the key by.")],
    rate_limit: Annotated[str | None, typer.Option("--rate-limit", help="N/PERIOD, e.g. 100/60s, 1000/1h. "
                                                   "[default: the config's default_rate_limit, 100/60s]",
                                                   show_default=False)] = None,
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="Expire after this long, e.g. 90d, 12h. "
                                                   "[default: never]", show_default=False)] = None,
    policy: Annotated[str, typer.Option("--policy", help="The named policy this key's checks use.")] = "default",
    as_json: JsonOpt = False,
) -> None:
    """Create a key and print its token (shown only this once)."""
    import asyncio

    from daemon.errors import ConfigError
    from daemon.keyadmin import check_key_name, check_policy_name
    from daemon.keyadmin import create as do_create

    check_key_name(name)
    rate = _rate(rate_limit)
    expires = _duration("--expires-in", expires_in)
    if expires is not None and expires <= 0:
        raise ConfigError("--expires-in must be positive")

    async def go(store: KeyStore, cfg: Any) -> tuple[KeyRecord, str]:
        limit, window = rate or cfg.rate_limit
        await asyncio.to_thread(check_policy_name, cfg, policy)
        return await do_create(store, cfg, name=name, limit=limit, window=window, expires_in=expires, policy=policy)

    _, (rec, token) = _run(go)
    if as_json:
        print_json({**key_json(rec), "token": token})
        return
    from rich.markup import escape

    c = console()
    c.print(f"Created key [bold]{rec.key_id}[/] ({escape(printable(rec.name))}), "
            f"rate limit {key_json(rec)['rate_limit']}, policy {rec.policy}, expires {iso(rec.expires_at) or 'never'}.")
    c.print("Token (shown only now; store it in your secret manager):")
    typer.echo(token)


@app.command("list")
def list_keys(
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked and expired keys.")] = False,
    as_json: JsonOpt = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide the lines get.")] = False,
) -> None:
    """List keys (active only unless --all); never shows secrets."""

    async def go(store: KeyStore, cfg: Any) -> list[KeyRecord]:
        return await store.list_all()

    _, recs = _run(go)
    now = time.time()
    rows = [key_json(r, now) for r in recs if all_keys or r.status(now) == "active"]
    if as_json:
        print_json(rows)
        return
    c = console()
    if not rows:
        c.print("No keys." + ("" if all_keys else " (--all shows revoked and expired ones)"))
        return
    # Identifiers (the key id revoke/rotate/show take, the policy) are never split; names fold between
    # words. Dates are days here (`keys show` and --json have the time). When the table does not fit,
    # `created`, then `last used`, then `expires` are left out (--wide keeps them).
    cols = [Column("key_id", lambda r: r["key_id"]), Column("name", lambda r: r["name"], kind="text", min_width=6),
            Column("status", lambda r: r["status"]), Column("rate limit", lambda r: r["rate_limit"]),
            Column("policy", lambda r: r["policy"]),
            Column("created (UTC)", lambda r: _day(r["created_at"]) or "-", drop=3),
            Column("expires", lambda r: _day(r["expires_at"]) or "never", drop=1),
            Column("last used", lambda r: _day(r["last_used_at"]) or "-", drop=2)]
    print_table(c, cols, rows, wide=wide)


def _get(key_id: str) -> Any:
    from daemon.errors import NotFoundError
    from daemon.keyadmin import check_key_id

    check_key_id(key_id)

    async def go(store: KeyStore, cfg: Any) -> KeyRecord | None:
        return await store.get(key_id)

    _, rec = _run(go)
    if rec is None:
        raise NotFoundError(f"no key with id {key_id!r}")
    return rec


@app.command("show")
def show(key_id: KeyIdArg, as_json: JsonOpt = False) -> None:
    """Show one key."""
    d = key_json(_get(key_id))
    if as_json:
        print_json(d)
        return
    for k, v in d.items():
        typer.echo(printable(f"{k:<13} {v if v is not None else '-'}"))


@app.command("revoke")
def revoke(key_id: KeyIdArg, as_json: JsonOpt = False) -> None:
    """Revoke a key; the running daemon refuses it within a second."""
    from daemon.keyadmin import check_key_id

    check_key_id(key_id)
    at = time.time()

    async def go(store: KeyStore, cfg: Any) -> KeyRecord:
        return await store.revoke(key_id, at)

    _, rec = _run(go)
    if as_json:
        print_json(key_json(rec))
    elif rec.revoked_at != at:  # revoking is idempotent: the first revocation stands
        typer.echo(f"{rec.key_id} ({printable(rec.name)}) was already revoked at {iso(rec.revoked_at)}; "
                   "nothing changed")
    else:
        typer.echo(f"revoked {rec.key_id} ({printable(rec.name)}) at {iso(rec.revoked_at)}")


@app.command("delete")
def delete(key_id: KeyIdArg, as_json: JsonOpt = False) -> None:
    """Delete a key for good (it leaves `keys list --all`); the running daemon refuses it within a second.

    For keys made for a test or a trial; the decisions it made stay in the log. Revoke a key that
    served real traffic instead, so that `keys list --all` keeps its history.
    """
    from daemon.keyadmin import check_key_id

    check_key_id(key_id)

    async def go(store: KeyStore, cfg: Any) -> KeyRecord:
        rec = await store.get(key_id)
        if rec is None:
            from daemon.errors import NotFoundError

            raise NotFoundError(f"no key with id {key_id!r}")
        await store.delete(key_id)
        return rec

    _, rec = _run(go)
    if as_json:
        print_json({"key_id": rec.key_id, "name": rec.name, "deleted": True})
    else:
        typer.echo(f"deleted {rec.key_id} ({rec.name})")


@app.command("rotate")
def rotate(
    key_id: KeyIdArg,
    grace: Annotated[str | None, typer.Option("--grace", help="Keep the old token valid this long, e.g. 1h. "
                                              "[default: 0, the old token stops at once]", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Give a key a new token (shown once); the old one stays valid for --grace."""
    from daemon.keyadmin import rotate as do_rotate

    grace_s = _duration("--grace", grace)

    async def go(store: KeyStore, cfg: Any) -> tuple[KeyRecord, str]:
        return await do_rotate(store, cfg, key_id, grace_s)

    _, (rec, token) = _run(go)
    if as_json:
        print_json({**key_json(rec), "token": token})
        return
    until = iso(rec.prev_expires_at) if grace_s else None
    console().print(f"Rotated {rec.key_id}; "
                    + (f"the old token stays valid until {until}." if until else "the old token no longer works."))
    console().print("New token (shown only now):")
    typer.echo(token)


@app.command("update")
def update(
    key_id: KeyIdArg,
    rate_limit: Annotated[str | None, typer.Option("--rate-limit", help="New limit, N/PERIOD.")] = None,
    policy: Annotated[str | None, typer.Option("--policy", help="New policy name.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="New name.")] = None,
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="Expire this long from now.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a key's rate limit, policy, name or expiry (the daemon picks it up within a second)."""
    import asyncio

    from daemon.errors import ConfigError
    from daemon.keyadmin import check_key_id, check_key_name, check_policy_name

    check_key_id(key_id)
    fields: dict[str, Any] = {}
    rate = _rate(rate_limit)
    if rate:
        fields["rate_limit"], fields["rate_window"] = rate
    if name is not None:
        check_key_name(name)
        fields["name"] = name
    exp = _duration("--expires-in", expires_in)
    if exp is not None:
        fields["expires_at"] = time.time() + exp
    if not fields and policy is None:
        raise ConfigError("nothing to change: give --rate-limit, --policy, --name or --expires-in")

    async def go(store: KeyStore, cfg: Any) -> KeyRecord:
        if policy is not None:
            await asyncio.to_thread(check_policy_name, cfg, policy)
            fields["policy"] = policy
        return await store.update(key_id, **fields)

    _, rec = _run(go)
    if as_json:
        print_json(key_json(rec))
        return
    d = key_json(rec)
    changed = [f"rate limit {d['rate_limit']}" if rate else "", f"policy {rec.policy}" if policy is not None else "",
               f"name {rec.name!r}" if name is not None else "",
               f"expires {d['expires_at']}" if exp is not None else ""]
    typer.echo(f"updated {rec.key_id}: {', '.join(c for c in changed if c)}")
