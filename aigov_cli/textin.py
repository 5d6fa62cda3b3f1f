"""The one boundary every command argument and standard input passes: text must be valid UTF-8.

Linux hands a program its arguments as bytes; Python turns bytes that are not UTF-8 into lone
surrogates (``'bad\\udcff'``), which then fail wherever the text is written: the terminal,
SQLite, JSON. :func:`guard_params` makes every parameter of every command refuse such text
while the command line is parsed, and :func:`read_stdin` does the same for ``-`` inputs, each
with one line naming the option.
"""

from __future__ import annotations

import enum
import re
import sys
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

from daemon.errors import ConfigError

_SURROGATE = re.compile("[\ud800-\udfff]")
_SHOW_CHARS = 60

Callback = Callable[[Any, Any, Any], Any]


def is_valid_text(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (no lone surrogates)."""
    return text.isascii() or _SURROGATE.search(text) is None


def shown(text: str) -> str:
    """``text`` quoted for a one-line message: undecodable bytes as ``\\xff``, controls escaped, at most 60 chars."""
    cut = text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS] + "…"
    parts: list[str] = []
    for ch in cut:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8, as the OS decoding kept it
            parts.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "'" or ch == "\\":
            parts.append("\\" + ch)
        elif ch.isprintable():
            parts.append(ch)
        else:  # newlines, tabs, other controls, lone surrogates: as Python writes them
            parts.append(repr(ch)[1:-1])
    return "'" + "".join(parts) + "'"


def check_text(label: str, value: Any) -> None:
    """Raise ConfigError (exit 2) when ``value`` (a str, a path, or a list of them) is not valid UTF-8."""
    if isinstance(value, enum.Enum):
        return
    if isinstance(value, PurePath):
        value = str(value)
    if isinstance(value, str):
        if not is_valid_text(value):
            raise ConfigError(f"{label}: {shown(value)} is not valid UTF-8")
    elif isinstance(value, list | tuple):
        for item in value:
            check_text(label, item)


def param_label(ctx: Any, param: Any) -> str:
    """How an error names a parameter: ``--name``, ``KEY_ID``, or the environment variable it came from."""
    source = ctx.get_parameter_source(param.name) if ctx is not None and param.name else None
    if source is not None and source.name == "ENVIRONMENT" and param.envvar:
        envvar = param.envvar
        return str(envvar if isinstance(envvar, str) else envvar[0])
    opts = [o for o in getattr(param, "opts", ()) if o.startswith("-")]
    if opts:
        return str(max(opts, key=len))
    return str(param.metavar or (param.name or "argument").upper())


def _guarded(original: Callback | None) -> Callback:
    def callback(ctx: Any, param: Any, value: Any) -> Any:
        check_text(param_label(ctx, param), value)
        return original(ctx, param, value) if original is not None else value

    callback.__aigov_guard__ = True  # type: ignore[attr-defined]
    return callback


def guard_params(command: Any) -> None:
    """Make every parameter of ``command`` and its subcommands refuse text that is not valid UTF-8."""
    for param in command.params:
        if not getattr(param.callback, "__aigov_guard__", False):
            param.callback = _guarded(param.callback)
    for sub in (getattr(command, "commands", None) or {}).values():
        guard_params(sub)


def read_stdin(label: str) -> str:
    """All of standard input as text; ConfigError naming ``label`` when it is not valid UTF-8 or closed."""
    if sys.stdin is None:  # started with standard input closed (`<&-`)
        raise ConfigError(f"{label}: there is no standard input to read (it is closed)")
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:  # a text stream put in place of stdin (tests, embedding)
        text = sys.stdin.read()
        check_text(label, text)
        return text
    data: bytes = buffer.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{label}: standard input is not valid UTF-8 "
                          f"(byte 0x{data[e.start]:02x} at offset {e.start})") from None
    # What reading sys.stdin as text did: universal newlines.
    return text.replace("\r\n", "\n").replace("\r", "\n")
