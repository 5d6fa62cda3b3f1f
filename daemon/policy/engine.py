"""The policy engine: a compiled policy evaluates one request into a :class:`Decision`.

A :class:`CompiledPolicy` is built once when the policy file is loaded and is
immutable afterwards, so a reload swaps one reference and requests in flight
finish on the policy they started with.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from typing import Any

import re2

from daemon.policy.detectors import Finding, Scanner
from daemon.policy.model import DIRECTIONS, Action, Decision, Mode, Reason, RuleSpec

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_RE2_OPTIONS.max_mem = 8 << 20


class GlobList:
    """Allow/deny glob lists for a name (model or operation), with a bounded memo of answers."""

    __slots__ = ("allow", "deny", "_any", "_rx", "_memo")

    def __init__(self, allow: Sequence[str], deny: Sequence[str]) -> None:
        self.allow = tuple(allow)
        self.deny = tuple(deny)
        self._any = self.allow == ("*",) and not self.deny
        allow_rx = "|".join(fnmatch.translate(p) for p in self.allow) or "(?!)"
        deny_rx = "|".join(fnmatch.translate(p) for p in self.deny) or "(?!)"
        self._rx = (re.compile(allow_rx), re.compile(deny_rx))
        self._memo: dict[str, bool] = {}

    def permits(self, name: str) -> bool:
        """True when ``name`` matches an allow glob and no deny glob."""
        if self._any:
            return True
        ok = self._memo.get(name)
        if ok is None:
            allow, deny = self._rx
            ok = allow.match(name) is not None and deny.match(name) is None
            if len(self._memo) < 4096:
                self._memo[name] = ok
        return ok


class CustomMatcher:
    """A policy author's literal or pattern, compiled by RE2 (linear time in the input)."""

    __slots__ = ("rule", "regex", "message")

    def __init__(self, rule: RuleSpec) -> None:
        self.rule = rule
        if rule.literal is not None:
            source = re2.escape(rule.literal)
            self.message = rule.message or "matched a listed phrase"
        else:
            assert rule.pattern is not None
            source = rule.pattern
            self.message = rule.message or "matched a custom pattern"
        if not rule.case_sensitive:
            source = "(?i)" + source
        self.regex = re2.compile(source, options=_RE2_OPTIONS)

    def findall(self, text: str) -> list[tuple[int, int]]:
        """Spans of every non-overlapping match (empty matches are ignored)."""
        return [(m.start(), m.end()) for m in self.regex.finditer(text) if m.end() > m.start()]


def compile_custom(rule: RuleSpec) -> CustomMatcher:
    """Compile a custom rule; ValueError with RE2's explanation when the pattern is invalid."""
    try:
        return CustomMatcher(rule)
    except re2.error as e:
        detail = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise ValueError(f"invalid pattern: {detail}") from None


def redact(text: str, spans: Sequence[tuple[int, int, str]]) -> str:
    """Replace each span with ``[REDACTED:<label>]``; overlapping spans merge under the first label."""
    if not spans:
        return text
    merged: list[list[Any]] = []
    for start, end, label in sorted(spans):
        if merged and start < merged[-1][1]:
            last = merged[-1]
            last[1] = max(last[1], end)
        else:
            merged.append([start, end, label])
    out, pos = [], 0
    for start, end, label in merged:
        out.append(text[pos:start])
        out.append(f"[REDACTED:{label}]")
        pos = end
    out.append(text[pos:])
    return "".join(out)


class _Side:
    """The rules of one direction, compiled: a detector scanner and the custom matchers."""

    __slots__ = ("detector_rules", "scanner", "custom")

    def __init__(self, rules: Sequence[RuleSpec]) -> None:
        self.detector_rules: dict[str, RuleSpec] = {r.detector: r for r in rules if r.detector}
        self.scanner = Scanner({d: r.options for d, r in self.detector_rules.items()})
        self.custom = tuple(compile_custom(r) for r in rules if not r.detector)


class CompiledPolicy:
    """One named policy, ready to evaluate requests."""

    def __init__(
        self,
        name: str,
        version: str,
        mode: Mode,
        models: GlobList,
        operations: GlobList,
        max_input_chars: int,
        rules: Sequence[RuleSpec],
    ) -> None:
        self.name = name
        self.version = version
        self.mode = mode
        self.models = models
        self.operations = operations
        self.max_input_chars = max_input_chars
        self.rules = tuple(rules)
        # Every detector the policy uses (for `aigov audit`); a detector may have one rule per direction.
        self.detector_rules: dict[str, RuleSpec] = {}
        for r in rules:
            if r.detector:
                self.detector_rules.setdefault(r.detector, r)
        self._sides = {d: _Side([r for r in rules if r.applies(d)]) for d in DIRECTIONS}
        self._enforce = mode is Mode.ENFORCE
        self._plain_allow = Decision(True, (), name, version)
        self._block = self._action(Action.BLOCK)

    def _action(self, action: Action) -> str:
        # In monitor mode every finding is reported as monitored: an allowed
        # request never carries a blocking reason, and nothing is redacted.
        return action.value if self._enforce else "monitor"

    def evaluate(self, model: str, operation: str, text: str, direction: str = "input") -> Decision:
        """Apply the policy to one text: what is sent to a model (``input``) or its answer (``output``).

        Only the rules whose ``applies_to`` names the direction run; model and operation lists and
        ``max_input_chars`` hold for both (the limit bounds the text scanned either way).
        """
        try:
            side = self._sides[direction]
        except KeyError:
            raise ValueError(f"direction must be input or output, not {direction!r}") from None
        reasons: list[Reason] = []
        block = self._block
        if not self.models.permits(model):
            reasons.append(Reason("model.denied", "model", block, "model is not allowed by the policy"))
        if not self.operations.permits(operation):
            reasons.append(Reason("operation.denied", "operation", block, "operation is not allowed by the policy"))
        redact_spans: list[tuple[int, int, str]] = []
        if len(text) > self.max_input_chars:
            # The span covers the whole input: it was not scanned, so a log that keeps
            # inputs "redacted" must mask all of it rather than store unscanned text.
            reasons.append(
                Reason("input.too_long", "input", block,
                       f"input is {len(text)} characters, over the limit of {self.max_input_chars}",
                       0, len(text))
            )
        else:
            findings: list[Finding] = side.scanner.scan(text) if side.detector_rules else []
            for f in findings:
                rule = side.detector_rules[f.detector]
                action = self._action(rule.action)
                reasons.append(Reason(rule.id, f.detector, action, rule.message or f.message, f.start, f.end))
                if action == "redact":
                    redact_spans.append((f.start, f.end, f.detector))
            for c in side.custom:
                for start, end in c.findall(text):
                    action = self._action(c.rule.action)
                    reasons.append(Reason(c.rule.id, c.rule.kind, action, c.message, start, end))
                    if action == "redact":
                        redact_spans.append((start, end, c.rule.id))
        if not reasons:
            return self._plain_allow
        allowed = not any(r.action == "block" for r in reasons)
        redacted = redact(text, redact_spans) if redact_spans else None
        return Decision(allowed, tuple(reasons), self.name, self.version, redacted)


def unknown_policy_decision(name: str, version: str) -> Decision:
    """The decision for a key bound to a policy the file does not define: fail closed."""
    return Decision(
        False,
        (Reason("policy.unknown", "policy", "block", f"the key's policy {name!r} is not defined"),),
        name,
        version,
    )
