"""``aigov logs``: list, follow, export, summarise and prune the decision log."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aigov_cli.output import config as load_cfg

if TYPE_CHECKING:
    from aigov_cli.logs.query import Filter
    from daemon.config import Config
    from daemon.storage.interface import DecisionReader

app = typer.Typer(
    help="Read the decision log: list and follow decisions, export, stats, prune.",
    invoke_without_command=True,
)


class DecisionChoice(enum.Enum):
    """``--decision``."""

    ALLOW = "allow"
    BLOCK = "block"


class FormatChoice(enum.Enum):
    """``logs export --format``."""

    JSONL = "jsonl"
    CSV = "csv"


Since = Annotated[str | None, typer.Option("--since", help="Only decisions from then on: a duration ago (30m, 1h, "
                                           "7d) or an ISO 8601 time.", show_default=False)]
Until = Annotated[str | None, typer.Option("--until", help="Only decisions before then (same forms as --since).",
                                           show_default=False)]
Key = Annotated[str | None, typer.Option("--key", help="Only this key id.", metavar="KEY_ID", show_default=False)]
Decision = Annotated[DecisionChoice | None, typer.Option("--decision", help="Only allow or block decisions.",
                                                         case_sensitive=False, show_default=False)]
Rule = Annotated[str | None, typer.Option("--rule", help="Only decisions where this rule fired (glob, e.g. "
                                          "'secrets.*').", show_default=False)]
Model = Annotated[str | None, typer.Option("--model", help="Only this model (glob, e.g. 'gpt-4*').",
                                           show_default=False)]
RequestId = Annotated[str | None, typer.Option("--request-id", help="Only the decision with this request id "
                                               "(the X-Request-Id of an answer).", show_default=False)]
ShowInput = Annotated[bool, typer.Option("--show-input", help="Include the stored input (as log_inputs kept it).")]
Wide = Annotated[bool, typer.Option("--wide", help="Table: every column and whole request ids, however wide the "
                                    "lines get.")]


class DirectionChoice(enum.Enum):
    """``--direction``."""

    INPUT = "input"
    OUTPUT = "output"


Direction = Annotated[DirectionChoice | None, typer.Option(
    "--direction", help="Only checks of what was sent to a model (input) or of what it answered (output).",
    case_sensitive=False, show_default=False)]
IncludeProbes = Annotated[bool, typer.Option(
    "--include-probes", help="Also the checks `aigov audit` and `aigov loadtest` made (left out by default).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (for `aigov logs`: one decision per line).")]


def register(root: typer.Typer) -> None:
    """Add ``aigov logs`` to the root app."""
    root.add_typer(app, name="logs")


def _filter(since: str | None, until: str | None, key: str | None = None, decision: DecisionChoice | None = None,
            rule: str | None = None, model: str | None = None, request_id: str | None = None,
            direction: DirectionChoice | None = None, include_probes: bool = True) -> Filter:
    from aigov_cli.logs.query import Filter, parse_time

    return Filter(parse_time("--since", since), parse_time("--until", until), key,
                  decision.value if decision else None, rule, model, request_id=request_id,
                  direction=direction.value if direction else None, include_probes=include_probes)


def _open() -> tuple[Config, DecisionReader]:
    """The configuration and a reader of its decision log (an empty log when there is no database yet)."""
    from daemon.storage import decision_reader

    cfg = load_cfg()
    return cfg, decision_reader(cfg)


def _line(d: dict[str, Any]) -> str:
    from aigov_cli.output import printable

    rules = ",".join(d["rules"]) or "-"
    return printable(f"{d['time']}  {d['decision']:<5}  {d.get('key_id') or '-':<12}  {d.get('model') or '-'}/"
                     f"{d.get('operation') or '-'}  {_latency(d)}  {rules}  {d['request_id']}")


@app.callback()
def logs(
    ctx: typer.Context,
    since: Since = None,
    until: Until = None,
    key: Key = None,
    decision: Decision = None,
    rule: Rule = None,
    model: Model = None,
    request_id: RequestId = None,
    direction: Direction = None,
    include_probes: IncludeProbes = False,
    limit: Annotated[int, typer.Option("--limit", help="Show the newest N decisions (0: all).", min=0)] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new decisions as they are written.")]
    = False,
    as_json: JsonOpt = False,
    show_input: ShowInput = False,
    wide: Wide = False,
) -> None:
    """List decisions, newest last (a table, or JSON Lines with --json); --follow keeps printing new ones."""
    if ctx.invoked_subcommand is not None:
        return
    import json

    from aigov_cli.logs.query import follow as do_follow
    from aigov_cli.logs.query import public

    flt = _filter(since, until, key, decision, rule, model, request_id, direction, include_probes)
    cfg, reader = _open()
    with reader:

        def emit(row: dict[str, Any]) -> None:
            d = public(row, show_input, hashes=False)
            if as_json:
                sys.stdout.write(json.dumps(d, ensure_ascii=False) + "\n")
            else:
                sys.stdout.write(_line(d) + "\n")
            sys.stdout.flush()

        try:
            # The listing and where --follow goes on from are read at one moment: nothing written
            # meanwhile is missed or shown twice.
            with reader.snapshot():
                top = reader.max_id()
                cursor = reader.follow_start(top) if follow else None
                rows: Any = reader.iter_decisions(flt) if limit == 0 else reader.latest(flt, limit, upto=top)
                if as_json or follow:
                    for row in rows:
                        emit(row)
                else:
                    _table([public(r, show_input, hashes=False) for r in rows], show_input,
                           (cfg.log_batch_size, cfg.log_flush_interval), wide)
            if follow:
                do_follow(reader, flt, emit, cursor=cursor)
        except KeyboardInterrupt:
            return
        except BrokenPipeError:  # `aigov logs --json | head`
            _quiet_stdout()


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush stays silent."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _short_time(iso: str) -> str:
    """``2026-11-27T12:35:40.511Z`` as ``11-27 12:35:40``."""
    return f"{iso[5:10]} {iso[11:19]}" if len(iso) >= 19 else iso


def _latency(d: dict[str, Any]) -> str:
    return f"{d['latency_ms']:.2f}ms" if d.get("latency_ms") is not None else "-"


SHORT_ID_CHARS = 8


def short_id(request_id: str) -> str:
    """A request id as a table shows it: ``…`` and its last 8 characters.

    A request id is a ULID: its first 10 characters are its time, which the time column shows;
    the last 16 are random, so the tail is what tells two requests apart.
    """
    return request_id if len(request_id) <= 2 * SHORT_ID_CHARS else "…" + request_id[-SHORT_ID_CHARS:]


def _table(rows: list[dict[str, Any]], show_input: bool, batching: tuple[int, float], wide: bool = False) -> None:
    from aigov_cli.output import Column, console, print_table

    c = console()
    if not rows:
        c.print("No decisions match.")
        size, interval = batching
        c.print(f"[dim]A running daemon writes decisions {size} at a time or every {interval:g} s, so the "
                "newest may not be here yet (--follow waits for them).[/dim]")
        return
    # Identifiers are never split: rule ids one per line, the request id as its distinguishing tail
    # (--wide, --json and --request-id take it whole), the time without year and milliseconds. When
    # the table does not fit, the operation, the latency, the key and then the model are left out,
    # in that order, rather than squeezed; --wide keeps them, --json has every field.
    def rid(d: dict[str, Any]) -> str:
        return str(d["request_id"]) if wide else short_id(d["request_id"])

    days = {d["time"][:10] for d in rows}
    if len(days) == 1 and not wide:  # one day (`--since 1h`, say): the date once, in the header
        day = next(iter(days))
        time_col = Column(f"UTC {day[5:10]}", lambda d: d["time"][11:19] if len(d["time"]) >= 19 else d["time"])
    else:
        time_col = Column("time (UTC)", lambda d: _short_time(d["time"]))
    cols = [time_col,
            Column("decision", lambda d: d["decision"]),
            Column("key", lambda d: d.get("key_id") or "-", drop=2),
            Column("model", lambda d: d.get("model") or "-", drop=1),
            Column("operation", lambda d: d.get("operation") or "-", drop=4),
            Column("rules", lambda d: "\n".join(d["rules"]) or "-", lines=True),
            Column("latency", _latency, drop=3, justify="right"),
            Column("request_id", rid)]
    if show_input:
        cols.append(Column("input", lambda d: d.get("input") or "", kind="text"))
    print_table(c, cols, rows, style=lambda d: "red" if d["decision"] == "block" else None, wide=wide)
    c.print(f"{len(rows)} decision(s)")


@app.command("export")
def export(
    fmt: Annotated[FormatChoice, typer.Option("--format", help="jsonl (one JSON object per line) or csv.",
                                              case_sensitive=False)] = FormatChoice.JSONL,
    out: Annotated[Path | None, typer.Option("--out", help="Write to FILE (mode 0600). [default: stdout]",
                                             metavar="FILE", dir_okay=False, show_default=False)] = None,
    since: Since = None,
    until: Until = None,
    key: Key = None,
    decision: Decision = None,
    rule: Rule = None,
    model: Model = None,
    direction: Direction = None,
    show_input: ShowInput = False,
) -> None:
    """Export matching decisions (the audit's and load tests' too), with their hashes, in constant memory."""
    import os

    from aigov_cli.logs.export import ExportFormat
    from aigov_cli.logs.export import export as do_export
    from daemon.errors import ConfigError

    flt = _filter(since, until, key, decision, rule, model, direction=direction)
    _, reader = _open()
    if out is None:
        f: Any = sys.stdout
    else:
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            raise ConfigError(f"--out: cannot write {out}: {e.strerror}") from None
        f = os.fdopen(fd, "w", encoding="utf-8", newline="")
    try:
        n = do_export(reader, flt, ExportFormat(fmt.value), f, show_input)
    except BrokenPipeError:  # `aigov logs export | head`: the reader has all it wants
        _quiet_stdout()
        return
    except OSError as e:
        from daemon.errors import AigovError

        raise AigovError(f"cannot write the export to {out or 'stdout'}: {e.strerror}") from None
    finally:
        if out is not None:
            f.close()
        reader.close()
    if out is not None:
        typer.echo(f"exported {n} decision(s) to {out}", err=True)


@app.command("stats")
def stats(
    since: Since = None,
    until: Until = None,
    key: Key = None,
    model: Model = None,
    direction: Direction = None,
    include_probes: IncludeProbes = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Counts by decision, rule, key and model, and latency percentiles."""
    from aigov_cli.logs.query import iso_ms
    from aigov_cli.logs.stats import stats as compute
    from aigov_cli.output import console, print_json

    flt = _filter(since, until, key, None, None, model, direction=direction, include_probes=include_probes)
    _, reader = _open()
    with reader:
        data = compute(reader, flt)
    data["first"], data["last"] = iso_ms(data["first"]), iso_ms(data["last"])
    if as_json:
        print_json(data)
        return
    from rich.table import Table
    from rich.text import Text

    from aigov_cli.output import printable

    c = console()
    c.print(f"{data['total']} decision(s)" + (f" from {data['first']} to {data['last']}" if data["total"] else ""))
    if not data["total"]:
        return
    for title, key_ in (("decision", "by_decision"), ("rule", "by_rule"), ("key", "by_key"), ("model", "by_model")):
        if not data[key_]:
            continue
        t = Table(title, "count", "share", title=f"by {title}", title_justify="left")
        for k, n in data[key_].items():
            t.add_row(Text(printable(str(k))), str(n), f"{100 * n / data['total']:.1f}%")
        c.print(t)
    lat = data["latency_ms"]
    c.print("latency (ms): " + "  ".join(f"{k} {v}" for k, v in lat.items()))


@app.command("prune")
def prune(
    older_than: Annotated[str | None, typer.Option("--older-than", help="Delete decisions older than this (e.g. "
                                                   "30d). [default: log_retention_days from the config]",
                                                   show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Delete old decisions; a checkpoint record keeps the rest of the hash chain verifiable."""
    import time

    from aigov_cli.logs.query import iso_ms
    from aigov_cli.output import print_json
    from daemon.errors import ConfigError
    from daemon.units import parse_duration

    cfg = load_cfg()
    if older_than is not None:
        try:
            age = parse_duration(older_than)
        except ValueError as e:
            raise ConfigError(f"--older-than: {e}") from None
        if age <= 0:
            raise ConfigError("--older-than must be positive")
    elif cfg.log_retention_days > 0:
        age = cfg.log_retention_days * 86400.0
    else:
        raise ConfigError("give --older-than (e.g. 30d) or set log_retention_days in config.toml")
    before = time.time() - age
    from daemon.storage import decision_reader

    with decision_reader(cfg) as reader:
        deleted = reader.prune(before)
    if as_json:
        print_json({"deleted": deleted, "before": iso_ms(before)})
    else:
        typer.echo(f"pruned {deleted} decision(s) older than {iso_ms(before)}"
                   + ("; a checkpoint record keeps the chain verifiable" if deleted else ""))
