"""Loading policy files: TOML -> validated :class:`PolicySet`.

A file is validated as a whole before it can replace the running policy; any
problem is a :class:`PolicyError` that names the place (line where it can be
found, and the dotted field path) and what is wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import AigovError
from daemon.policy.detectors import DETECTOR_NAMES, GROUPS, DetectorOptionError, Scanner
from daemon.policy.engine import CompiledPolicy, GlobList, compile_custom
from daemon.policy.model import BOTH_DIRECTIONS, DIRECTIONS, Action, Mode, RuleSpec

DEFAULT_POLICY_NAME = "default"
DEFAULT_MAX_INPUT_CHARS = 100_000
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,63}")
_POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")
_GROUP_PREFIX = {"pii": "pii", "secrets": "secrets", "manipulation": "manipulation"}
_MONITORED_BY_DEFAULT = ("email", "phone", "ip_address")
_POLICY_KEYS = {"mode", "models", "operations", "max_input_chars", "rules", "description"}
_RULE_KEYS = {"id", "detector", "literal", "pattern", "case_sensitive", "action", "message", "enabled", "applies_to"}
# Detectors that the default policy also applies to what models answer: a model must not hand out
# credentials (its own context's, or ones it was trained on) any more than a user may send them.
_OUTPUT_GROUPS = ("secrets",)


MAX_ERRORS = 20
"""How many problems of one file an error lists (the rest are counted)."""


class PolicyError(AigovError):
    """An invalid policy file; the message says where and what, one line per problem (at most 20).

    ``errors`` holds every problem found, each ``FILE:LINE: field.path: what is wrong``.
    """

    def __init__(self, message: str, errors: list[str] | None = None, line: int = 0) -> None:
        self.errors = errors or [message]
        self.line = line  # of the first problem (0: none known), to order them
        shown = self.errors[:MAX_ERRORS]
        more = len(self.errors) - len(shown)
        if more:
            shown = [*shown, f"... and {more} more error{'s' if more > 1 else ''} in the file"]
        super().__init__("\n".join(shown))


def rule_id_for(detector: str) -> str:
    """The rule id the default policy uses for a built-in detector (``pii.credit_card``...)."""
    for group, names in GROUPS.items():
        if detector in names:
            return f"{_GROUP_PREFIX.get(group, group)}.{detector}"
    return detector


def default_policy_text() -> str:
    """The default policy file, as ``aigov init`` writes it."""
    lines = [
        "# aigov policy file. Several named policies may live here; a key uses the one",
        '# named when it was created (aigov keys create --policy NAME), else "default".',
        "#",
        '# mode: "enforce" applies the actions; "monitor" reports every finding and blocks nothing.',
        "# models / operations: glob patterns; deny wins over allow.",
        '# rules: a built-in detector, a literal or an RE2 pattern, with action "block", "redact"',
        '#        (adds redacted_text to the answer) or "monitor" (reported, never blocks).',
        '#        applies_to: which texts a rule checks: "input" (sent to a model), "output" (the',
        '#        model\'s answer, checked with "direction": "output"); both when left out.',
        "",
        f"[policies.{DEFAULT_POLICY_NAME}]",
        'mode = "enforce"',
        f"max_input_chars = {DEFAULT_MAX_INPUT_CHARS}",
        'models = { allow = ["*"], deny = [] }          # e.g. allow = ["gpt-4o*", "claude-*"]',
        'operations = { allow = ["*"], deny = [] }      # e.g. deny = ["fine_tune"]',
        "",
    ]
    output_too = {d for g in _OUTPUT_GROUPS for d in GROUPS[g]}
    for name in DETECTOR_NAMES:
        action = "monitor" if name in _MONITORED_BY_DEFAULT else "block"
        applies = '["input", "output"]' if name in output_too else '["input"]'
        lines += [
            f"[[policies.{DEFAULT_POLICY_NAME}.rules]]",
            f'id = "{rule_id_for(name)}"',
            f'detector = "{name}"',
            f'action = "{action}"',
            f"applies_to = {applies}",
            "",
        ]
    lines += [
        "# A custom rule: a literal phrase (or pattern = '...' for an RE2 regular expression).",
        f"# [[policies.{DEFAULT_POLICY_NAME}.rules]]",
        '# id = "custom.codename"',
        '# literal = "Project Falcon"',
        "# case_sensitive = false",
        '# action = "block"',
        '# message = "internal code name"',
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class PolicySet:
    """Every policy of one file, compiled; immutable."""

    policies: dict[str, CompiledPolicy]
    version: str
    source: str

    def get(self, name: str) -> CompiledPolicy | None:
        """The policy with this name, or None."""
        return self.policies.get(name)

    @property
    def names(self) -> list[str]:
        """The policy names, in file order."""
        return list(self.policies)


# A table header line: [policies.NAME] or [[policies.NAME.rules]] (with an optional comment).
_HEADER = re.compile(r"""^\s*(\[\[?)\s*((?:[^\]#"']|"[^"]*"|'[^']*')+?)\s*\]\]?\s*(?:#.*)?$""")
_OPTION_NAME = re.compile(r"option '([^']+)'")
_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def _split_key(raw: str) -> tuple[str, ...]:
    """A dotted TOML key (``policies."strict-eu".rules``) as its parts, quotes removed."""
    parts: list[str] = []
    buf: list[str] = []
    quote: str | None = None
    for ch in raw:
        if quote:
            if ch == quote:
                quote = None
            else:
                buf.append(ch)
        elif ch in "\"'":
            quote = ch
        elif ch == ".":
            parts.append("".join(buf))
            buf = []
        elif not ch.isspace():
            buf.append(ch)
    parts.append("".join(buf))
    return tuple(parts)


@dataclass(frozen=True)
class _Section:
    key: tuple[str, ...]
    array: bool
    start: int  # index of the header line
    end: int  # index of the next header line (or len(lines))


Block = tuple[int, int]


class _Ctx:
    """The file's text, for pointing errors at the right line of the right table; the problems found."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()
        self.found: list[tuple[int, str]] = []  # (line or 0, message), in the order found
        heads: list[tuple[tuple[str, ...], bool, int]] = []
        for i, line in enumerate(self.lines):
            m = _HEADER.match(line)
            if m:
                heads.append((_split_key(m.group(2)), m.group(1) == "[[", i))
        self.sections = [
            _Section(key, array, start, heads[n + 1][2] if n + 1 < len(heads) else len(self.lines))
            for n, (key, array, start) in enumerate(heads)
        ]

    def policy_block(self, name: str) -> Block | None:
        """The lines of ``[policies.NAME]``, if the file has that header."""
        for s in self.sections:
            if s.key == ("policies", name) and not s.array:
                return s.start, s.end
        return None

    def rule_block(self, name: str, index: int) -> Block | None:
        """The lines of the ``index``-th ``[[policies.NAME.rules]]`` table, if written that way."""
        found = [s for s in self.sections if s.key == ("policies", name, "rules") and s.array]
        return (found[index].start, found[index].end) if index < len(found) else None

    def inline_rule(self, block: Block | None, rules: list[Any], index: int) -> Block | None:
        """The line of ``rules[index]`` when the rules are inline tables inside ``block``.

        A TOML 1.0 inline table is one line; the rule is found by its id (the n-th line with
        that id, when an earlier rule has the same one). None when the id is missing or odd.
        """
        raw = rules[index]
        rid = raw.get("id") if isinstance(raw, dict) else None
        if block is None or not isinstance(rid, str) or not rid:
            return None
        nth = sum(1 for r in rules[:index] if isinstance(r, dict) and r.get("id") == rid)
        rx = re.compile(rf"""[{{,]\s*(?:id|"id"|'id')\s*=\s*(["']){re.escape(rid)}\1""")
        hits = [i for i in range(*block) if rx.search(self.lines[i])]
        return (hits[nth], hits[nth] + 1) if nth < len(hits) else None

    def line(self, block: Block | None, key: str | None = None, *needles: str) -> int | None:
        """1-based line of ``key = ...`` (or of a line holding all needles) inside ``block``.

        Falls back to the block's header line, then to a search of the whole file (for
        inline tables and dotted keys, which have no header of their own).
        """
        key_rx = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*[=.]""") if key \
            else None
        lo, hi = block if block is not None else (0, len(self.lines))
        for i in range(lo, hi):
            text = self.lines[i]
            if key_rx is not None and key_rx.match(text):
                return i + 1
            if key_rx is None and needles and all(n in text for n in needles):
                return i + 1
        if key_rx is not None and needles:
            for i in range(lo, hi):
                if all(n in self.lines[i] for n in needles):
                    return i + 1
        if block is not None:
            return lo + 1
        return None

    def top_line(self, key: str) -> int | None:
        """1-based line where the top-level ``key`` starts (a ``[key...]`` header or ``key = ...``)."""
        for s in self.sections:
            if s.key[0] == key:
                return s.start + 1
        return self.line(None, key)

    def error(self, where: str, what: str, line: int | None = None) -> PolicyError:
        """A PolicyError reading ``FILE:LINE: field.path: what is wrong``."""
        loc = f"{self.source}:{line}" if line else self.source
        return PolicyError(f"{loc}: {where}: {what}", line=line or 0)

    def add(self, e: PolicyError) -> None:
        """Record a problem and go on validating: a file's every problem is reported at once."""
        self.found.extend((e.line, msg) for msg in e.errors)

    @contextlib.contextmanager
    def collect(self) -> Iterator[None]:
        """Record the PolicyError a check raises instead of stopping at it."""
        try:
            yield
        except PolicyError as e:
            self.add(e)

    def raise_found(self) -> None:
        """Raise one PolicyError listing every problem recorded, by line."""
        if self.found:
            ordered = sorted(self.found, key=lambda f: f[0])  # stable: same line, order found
            raise PolicyError(ordered[0][1], [msg for _, msg in ordered])


def _str_list(ctx: _Ctx, where: str, value: Any, block: Block | None, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ctx.error(where, "must be a list of non-empty strings (glob patterns)", ctx.line(block, key))
    for v in value:
        if v.count("[") != v.count("]"):
            raise ctx.error(where, f"bad glob {v!r}: unbalanced brackets", ctx.line(block, None, v))
    return list(value)


def _globs(ctx: _Ctx, where: str, value: Any, block: Block | None) -> GlobList:
    field_name = where.rsplit(".", 1)[-1]
    if value is None:
        return GlobList(["*"], [])
    if isinstance(value, list):
        return GlobList(_str_list(ctx, where, value, block, field_name), [])
    if not isinstance(value, dict):
        raise ctx.error(where, "must be a table with allow and/or deny lists", ctx.line(block, field_name))
    for key in sorted(set(value) - {"allow", "deny"}):
        ctx.add(ctx.error(where, f"unknown key {key!r} (use allow, deny)", ctx.line(block, field_name, key)))
    allow: list[str] = ["*"]
    deny: list[str] = []
    with ctx.collect():
        allow = _str_list(ctx, where + ".allow", value.get("allow", ["*"]), block, field_name)
    with ctx.collect():
        deny = _str_list(ctx, where + ".deny", value.get("deny", []), block, field_name)
    try:
        return GlobList(allow, deny)
    except re.error as e:  # fnmatch output that Python's re still rejects
        raise ctx.error(where, f"bad glob: {e}", ctx.line(block, field_name)) from None


def _applies_to(ctx: _Ctx, where: str, value: Any, block: Block | None) -> frozenset[str]:
    """A rule's ``applies_to``: a non-empty list of directions; both when absent."""
    if value is None:
        return BOTH_DIRECTIONS
    what = 'must be a list of directions: ["input"], ["output"] or ["input", "output"]'
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ctx.error(where + ".applies_to", what, ctx.line(block, "applies_to"))
    for v in value:
        if v not in DIRECTIONS:
            raise ctx.error(where + ".applies_to", f"unknown direction {v!r} (use input, output)",
                            ctx.line(block, "applies_to"))
    if len(set(value)) != len(value):
        raise ctx.error(where + ".applies_to", "names a direction twice", ctx.line(block, "applies_to"))
    return frozenset(value)


def _rule(ctx: _Ctx, where: str, raw: Any, block: Block | None) -> RuleSpec | None:
    """A rule, or None when it is disabled or has problems (each recorded in ``ctx``)."""
    if not isinstance(raw, dict):
        raise ctx.error(where, "each rule must be a table", ctx.line(block, "rules"))
    before = len(ctx.found)
    rid = raw.get("id")
    if not isinstance(rid, str) or not _RULE_ID.fullmatch(rid):
        what = "needs an id" if rid is None else "id must be lowercase letters, digits, '.', '_' or '-' (pii.email)"
        ctx.add(ctx.error(where, what, ctx.line(block, "id")))
    else:
        where = f"{where} ({rid})"
    kinds = [k for k in ("detector", "literal", "pattern") if k in raw]
    if len(kinds) != 1:
        what = "needs one of detector, literal or pattern" if not kinds else \
            f"has {' and '.join(kinds)}: give exactly one of detector, literal or pattern"
        ctx.add(ctx.error(where, what, ctx.line(block, kinds[-1] if kinds else "id")))
    action_raw = raw.get("action", "block")
    action = Action.BLOCK
    try:
        action = Action(action_raw)
    except ValueError:
        ctx.add(ctx.error(
            where + ".action", f"must be block, redact or monitor, not {action_raw!r}", ctx.line(block, "action")))
    for flag in ("enabled", "case_sensitive"):
        if not isinstance(raw.get(flag, True), bool):
            ctx.add(ctx.error(f"{where}.{flag}", "must be true or false", ctx.line(block, flag)))
    enabled = raw.get("enabled", True) is not False
    case = raw.get("case_sensitive", True) is not False
    applies_to = BOTH_DIRECTIONS
    with ctx.collect():
        applies_to = _applies_to(ctx, where, raw.get("applies_to"), block)
    message = raw.get("message")
    if message is not None and not isinstance(message, str):
        ctx.add(ctx.error(where + ".message", "must be a string", ctx.line(block, "message")))
        message = None
    spec: RuleSpec | None = None
    kind = kinds[0] if len(kinds) == 1 else None
    if kind == "detector":
        det = raw["detector"]
        options = {k: v for k, v in raw.items() if k not in _RULE_KEYS}
        if not isinstance(det, str) or det not in DETECTOR_NAMES:
            ctx.add(ctx.error(
                where + ".detector", f"unknown detector {det!r} (known: {', '.join(DETECTOR_NAMES)})",
                ctx.line(block, "detector"),
            ))
        else:
            try:
                Scanner({det: options})
            except DetectorOptionError as e:
                m = _OPTION_NAME.search(str(e))
                ctx.add(ctx.error(where, str(e), ctx.line(block, m.group(1) if m else "detector")))
            spec = RuleSpec(str(rid), action, detector=det, case_sensitive=case, message=message, options=options,
                            applies_to=applies_to)
    elif kind is not None:
        for key in sorted(set(raw) - _RULE_KEYS):
            ctx.add(ctx.error(
                where, f"unknown key {key!r} (custom rules take: {', '.join(sorted(_RULE_KEYS - {'detector'}))})",
                ctx.line(block, key),
            ))
        value = raw[kind]
        if not isinstance(value, str) or not value:
            ctx.add(ctx.error(f"{where}.{kind}", "must be a non-empty string", ctx.line(block, kind)))
        else:
            spec = RuleSpec(
                str(rid), action, case_sensitive=case, message=message,
                literal=value if kind == "literal" else None, pattern=value if kind == "pattern" else None,
                applies_to=applies_to,
            )
            try:
                compile_custom(spec)
            except ValueError as e:
                ctx.add(ctx.error(f"{where}.{kind}", str(e), ctx.line(block, kind)))
    if len(ctx.found) > before:
        return None
    return spec if enabled else None


def _policy(ctx: _Ctx, name: str, raw: Any, version: str) -> CompiledPolicy | None:
    """A compiled policy, or None when it has problems (each recorded in ``ctx``)."""
    where = f"policies.{name}"
    block = ctx.policy_block(name)
    before = len(ctx.found)
    if not _POLICY_NAME.fullmatch(name):
        ctx.add(ctx.error(where, "policy names are letters, digits, '_' or '-'", ctx.line(block, None, name)))
    if not isinstance(raw, dict):
        ctx.add(ctx.error(where, "must be a table", ctx.line(block, None, name)))
        return None
    for key in sorted(set(raw) - _POLICY_KEYS):
        ctx.add(ctx.error(
            where, f"unknown key {key!r} (known: {', '.join(sorted(_POLICY_KEYS))})", ctx.line(block, key)))
    mode_raw = raw.get("mode", "enforce")
    mode = Mode.ENFORCE
    try:
        mode = Mode(mode_raw)
    except ValueError:
        ctx.add(ctx.error(where + ".mode", f"must be enforce or monitor, not {mode_raw!r}", ctx.line(block, "mode")))
    if not isinstance(raw.get("description", ""), str):
        ctx.add(ctx.error(where + ".description", "must be a string", ctx.line(block, "description")))
    mic = raw.get("max_input_chars", DEFAULT_MAX_INPUT_CHARS)
    if not isinstance(mic, int) or isinstance(mic, bool) or mic < 1:
        ctx.add(ctx.error(where + ".max_input_chars", "must be a positive integer",
                          ctx.line(block, "max_input_chars")))
    models = operations = GlobList(["*"], [])
    with ctx.collect():
        models = _globs(ctx, where + ".models", raw.get("models"), block)
    with ctx.collect():
        operations = _globs(ctx, where + ".operations", raw.get("operations"), block)
    rules_raw = raw.get("rules", [])
    if not isinstance(rules_raw, list):
        ctx.add(ctx.error(
            where + ".rules", "must be an array of tables ([[policies.NAME.rules]])", ctx.line(block, "rules")))
        rules_raw = []
    rules: list[RuleSpec] = []
    seen_ids: set[str] = set()
    seen_detectors: dict[tuple[str, str], str] = {}  # (detector, direction) -> rule id
    for i, r in enumerate(rules_raw):
        rule_where = f"{where}.rules[{i}]"
        rule_block = ctx.rule_block(name, i) or ctx.inline_rule(block, rules_raw, i) or block
        spec: RuleSpec | None = None
        with ctx.collect():
            spec = _rule(ctx, rule_where, r, rule_block)
        rid = r.get("id") if isinstance(r, dict) else None
        if isinstance(rid, str):
            if rid in seen_ids:
                ctx.add(ctx.error(f"{rule_where}.id", f"duplicate rule id {rid!r}", ctx.line(rule_block, "id", rid)))
            seen_ids.add(rid)
        if spec is None:
            continue
        if spec.detector:
            taken = [(d, seen_detectors[(spec.detector, d)]) for d in sorted(spec.applies_to)
                     if (spec.detector, d) in seen_detectors]
            if taken:
                direction, other = taken[0]
                ctx.add(ctx.error(
                    f"{rule_where} ({rid}).detector",
                    f"detector {spec.detector!r} is already used by rule {other!r} of this policy "
                    f"for {direction} (one rule per detector and direction; see applies_to)",
                    ctx.line(rule_block, "detector"),
                ))
                continue
            for direction in spec.applies_to:
                seen_detectors[(spec.detector, direction)] = str(rid)
        rules.append(spec)
    if len(ctx.found) > before:
        return None
    assert isinstance(mic, int)
    return CompiledPolicy(name, version, mode, models, operations, mic, rules)


def parse_policy(text: str, source: str = "policy.toml") -> PolicySet:
    """Validate and compile a policy file's text; PolicyError on any problem."""
    version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    ctx = _Ctx(source, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        at = _TOML_AT.search(msg)
        if at:
            raise PolicyError(f"{source}:{at[1]}: invalid TOML: {msg[:at.start()]} (column {at[2]})") from None
        if msg.endswith("(at end of document)"):
            last = max(1, len(text.splitlines()))
            raise PolicyError(f"{source}:{last}: invalid TOML: {msg[:-21]} at the end of the file") from None
        raise PolicyError(f"{source}: invalid TOML: {msg}") from None
    for key in sorted(set(data) - {"policies"}):
        ctx.add(ctx.error(key, "unknown top-level key (policies live under [policies.NAME])", ctx.top_line(key)))
    pols = data.get("policies")
    if not isinstance(pols, dict) or not pols:
        ctx.add(ctx.error("policies", "the file defines no policy (add a [policies.default] table)",
                          ctx.line(None, "policies")))
        pols = {}
    compiled = {name: _policy(ctx, name, raw, version) for name, raw in pols.items()}
    ctx.raise_found()
    return PolicySet({name: p for name, p in compiled.items() if p is not None}, version, source)


def load_policy_file(path: Path) -> PolicySet:
    """Load a policy file; a missing file means the built-in default policy."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return parse_policy(default_policy_text(), "(built-in default policy)")
    except UnicodeDecodeError:
        raise PolicyError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise PolicyError(f"cannot read {path}: {e.strerror}") from None
    return parse_policy(text, str(path))
