"""Loading policy files: TOML -> validated :class:`PolicySet`.

A file is validated as a whole before it can replace the running policy; any
problem is a :class:`PolicyError` that names the place (line where it can be
found, and the dotted field path) and what is wrong.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import AigovError
from daemon.policy.detectors import DETECTOR_NAMES, GROUPS, DetectorOptionError, Scanner
from daemon.policy.engine import CompiledPolicy, GlobList, compile_custom
from daemon.policy.model import Action, Mode, RuleSpec

DEFAULT_POLICY_NAME = "default"
DEFAULT_MAX_INPUT_CHARS = 100_000
_RULE_ID = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,63}")
_POLICY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")
_GROUP_PREFIX = {"pii": "pii", "secrets": "secrets", "manipulation": "manipulation"}
_MONITORED_BY_DEFAULT = ("email", "phone", "ip_address")
_POLICY_KEYS = {"mode", "models", "operations", "max_input_chars", "rules", "description"}
_RULE_KEYS = {"id", "detector", "literal", "pattern", "case_sensitive", "action", "message", "enabled"}


class PolicyError(AigovError):
    """An invalid policy file; the message says where and what."""


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
        "",
        f"[policies.{DEFAULT_POLICY_NAME}]",
        'mode = "enforce"',
        f"max_input_chars = {DEFAULT_MAX_INPUT_CHARS}",
        'models = { allow = ["*"], deny = [] }          # e.g. allow = ["gpt-4o*", "claude-*"]',
        'operations = { allow = ["*"], deny = [] }      # e.g. deny = ["fine_tune"]',
        "",
    ]
    for name in DETECTOR_NAMES:
        action = "monitor" if name in _MONITORED_BY_DEFAULT else "block"
        lines += [
            f"[[policies.{DEFAULT_POLICY_NAME}.rules]]",
            f'id = "{rule_id_for(name)}"',
            f'detector = "{name}"',
            f'action = "{action}"',
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


def _line_of(text: str, *needles: str) -> int | None:
    """The first line holding all needles in order (1-based), to point users at the spot."""
    for i, line in enumerate(text.splitlines(), 1):
        if all(n in line for n in needles):
            return i
    return None


class _Ctx:
    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.text = text

    def error(self, where: str, what: str, *needles: str) -> PolicyError:
        line = _line_of(self.text, *needles) if needles else None
        loc = f"{self.source}:{line}" if line else self.source
        return PolicyError(f"{loc}: {where}: {what}")


def _str_list(ctx: _Ctx, where: str, value: Any, needle: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ctx.error(where, "must be a list of non-empty strings (glob patterns)", needle)
    for v in value:
        if v.count("[") != v.count("]"):
            raise ctx.error(where, f"bad glob {v!r}: unbalanced brackets", v)
    return list(value)


def _globs(ctx: _Ctx, where: str, value: Any) -> GlobList:
    if value is None:
        return GlobList(["*"], [])
    if isinstance(value, list):
        return GlobList(_str_list(ctx, where, value, where.rsplit(".", 1)[-1]), [])
    if not isinstance(value, dict):
        raise ctx.error(where, "must be a table with allow and/or deny lists", where.rsplit(".", 1)[-1])
    unknown = set(value) - {"allow", "deny"}
    if unknown:
        raise ctx.error(where, f"unknown key {sorted(unknown)[0]!r} (use allow, deny)", sorted(unknown)[0])
    allow = _str_list(ctx, where + ".allow", value.get("allow", ["*"]), "allow")
    deny = _str_list(ctx, where + ".deny", value.get("deny", []), "deny")
    return GlobList(allow, deny)


def _rule(ctx: _Ctx, where: str, raw: Any) -> RuleSpec | None:
    if not isinstance(raw, dict):
        raise ctx.error(where, "each rule must be a table")
    rid = raw.get("id")
    needle = str(rid) if rid is not None else "rules"
    if not isinstance(rid, str) or not _RULE_ID.fullmatch(rid):
        raise ctx.error(where, "id must be lowercase letters, digits, '.', '_' or '-' (e.g. pii.email)", needle)
    where = f"{where} ({rid})"
    kinds = [k for k in ("detector", "literal", "pattern") if k in raw]
    if len(kinds) != 1:
        raise ctx.error(where, "needs exactly one of detector, literal or pattern", needle)
    action_raw = raw.get("action", "block")
    try:
        action = Action(action_raw)
    except ValueError:
        raise ctx.error(where, f"action must be block, redact or monitor, not {action_raw!r}", needle) from None
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ctx.error(where, "enabled must be true or false", needle)
    case = raw.get("case_sensitive", True)
    if not isinstance(case, bool):
        raise ctx.error(where, "case_sensitive must be true or false", needle)
    message = raw.get("message")
    if message is not None and not isinstance(message, str):
        raise ctx.error(where, "message must be a string", needle)
    kind = kinds[0]
    if kind == "detector":
        det = raw["detector"]
        if det not in DETECTOR_NAMES:
            raise ctx.error(where, f"unknown detector {det!r} (known: {', '.join(DETECTOR_NAMES)})", str(det))
        options = {k: v for k, v in raw.items() if k not in _RULE_KEYS}
        try:
            Scanner({det: options})
        except DetectorOptionError as e:
            raise ctx.error(where, str(e), needle) from None
        spec = RuleSpec(rid, action, detector=det, case_sensitive=case, message=message, options=options)
    else:
        extra = set(raw) - _RULE_KEYS
        if extra:
            raise ctx.error(where, f"unknown key {sorted(extra)[0]!r}", sorted(extra)[0])
        value = raw[kind]
        if not isinstance(value, str) or not value:
            raise ctx.error(where, f"{kind} must be a non-empty string", needle)
        spec = RuleSpec(
            rid, action, case_sensitive=case, message=message,
            literal=value if kind == "literal" else None, pattern=value if kind == "pattern" else None,
        )
        try:
            compile_custom(spec)
        except ValueError as e:
            raise ctx.error(where, str(e), needle) from None
    return spec if enabled else None


def _policy(ctx: _Ctx, name: str, raw: Any, version: str) -> CompiledPolicy:
    where = f"policies.{name}"
    if not _POLICY_NAME.fullmatch(name):
        raise ctx.error(where, "policy names are letters, digits, '_' or '-'", name)
    if not isinstance(raw, dict):
        raise ctx.error(where, "must be a table", f"policies.{name}")
    unknown = set(raw) - _POLICY_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ctx.error(where, f"unknown key {key!r} (known: {', '.join(sorted(_POLICY_KEYS))})", key)
    mode_raw = raw.get("mode", "enforce")
    try:
        mode = Mode(mode_raw)
    except ValueError:
        raise ctx.error(where + ".mode", f"must be enforce or monitor, not {mode_raw!r}", "mode") from None
    mic = raw.get("max_input_chars", DEFAULT_MAX_INPUT_CHARS)
    if not isinstance(mic, int) or isinstance(mic, bool) or mic < 1:
        raise ctx.error(where + ".max_input_chars", "must be a positive integer", "max_input_chars")
    rules_raw = raw.get("rules", [])
    if not isinstance(rules_raw, list):
        raise ctx.error(where + ".rules", "must be an array of tables ([[policies.NAME.rules]])", "rules")
    rules: list[RuleSpec] = []
    seen_ids: set[str] = set()
    seen_detectors: set[str] = set()
    for i, r in enumerate(rules_raw):
        spec = _rule(ctx, f"{where}.rules[{i}]", r)
        rid = r.get("id") if isinstance(r, dict) else None
        if rid in seen_ids:
            raise ctx.error(f"{where}.rules[{i}]", f"duplicate rule id {rid!r}", str(rid))
        seen_ids.add(str(rid))
        if spec is None:
            continue
        if spec.detector:
            if spec.detector in seen_detectors:
                raise ctx.error(
                    f"{where}.rules[{i}]", f"detector {spec.detector!r} is used by two rules of one policy", str(rid)
                )
            seen_detectors.add(spec.detector)
        rules.append(spec)
    return CompiledPolicy(
        name, version, mode,
        _globs(ctx, where + ".models", raw.get("models")),
        _globs(ctx, where + ".operations", raw.get("operations")),
        mic, rules,
    )


def parse_policy(text: str, source: str = "policy.toml") -> PolicySet:
    """Validate and compile a policy file's text; PolicyError on any problem."""
    version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    ctx = _Ctx(source, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(f"{source}: invalid TOML: {e}") from None
    unknown = set(data) - {"policies"}
    if unknown:
        key = sorted(unknown)[0]
        raise ctx.error(key, "unknown top-level key (policies live under [policies.NAME])", key)
    pols = data.get("policies")
    if not isinstance(pols, dict) or not pols:
        raise ctx.error("policies", "the file defines no policy (add a [policies.default] table)")
    compiled = {name: _policy(ctx, name, raw, version) for name, raw in pols.items()}
    return PolicySet(compiled, version, source)


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
