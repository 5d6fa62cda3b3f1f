"""The policy model: what a loaded, validated policy file holds, and the decision it produces."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

DIRECTIONS: tuple[str, ...] = ("input", "output")
"""What a check can be about: the text sent to a model (``input``) or the model's answer (``output``)."""
BOTH_DIRECTIONS: frozenset[str] = frozenset(DIRECTIONS)


class Action(enum.Enum):
    """What a rule does when it fires."""

    BLOCK = "block"
    REDACT = "redact"
    MONITOR = "monitor"


class Mode(enum.Enum):
    """``enforce`` applies the actions; ``monitor`` reports everything and blocks nothing."""

    ENFORCE = "enforce"
    MONITOR = "monitor"


@dataclass(frozen=True, slots=True)
class Reason:
    """One finding that fired, as it appears in the response and the decision log."""

    rule: str
    detector: str
    action: str
    message: str
    start: int | None = None
    end: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The wire form of the reason."""
        return {
            "rule": self.rule,
            "detector": self.detector,
            "action": self.action,
            "message": self.message,
            "start": self.start,
            "end": self.end,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of evaluating one request against one policy."""

    allowed: bool
    reasons: tuple[Reason, ...]
    policy_name: str
    policy_version: str
    redacted_text: str | None = None

    @property
    def decision(self) -> str:
        """``allow`` or ``block``."""
        return "allow" if self.allowed else "block"

    @property
    def rules(self) -> tuple[str, ...]:
        """The rule ids that fired, in order, without repeats."""
        if not self.reasons:  # the common plain allow
            return ()
        return tuple(dict.fromkeys(r.rule for r in self.reasons))


@dataclass(frozen=True)
class RuleSpec:
    """A rule as written in the policy file, after validation."""

    id: str
    action: Action
    detector: str | None = None
    literal: str | None = None
    pattern: str | None = None
    case_sensitive: bool = True
    message: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    applies_to: frozenset[str] = BOTH_DIRECTIONS

    def applies(self, direction: str) -> bool:
        """True when the rule checks texts of this direction (``input`` or ``output``)."""
        return direction in self.applies_to

    @property
    def kind(self) -> str:
        """``detector``, ``literal`` or ``pattern``."""
        return "detector" if self.detector else "literal" if self.literal is not None else "pattern"
