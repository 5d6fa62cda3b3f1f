"""TEMPORARY placeholder written by the lead so the daemon imports while the detectors are
being built; the detectors helper replaces this whole file with the real registry."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DETECTOR_NAMES: tuple[str, ...] = (
    "email", "phone", "credit_card", "us_ssn", "iban", "ip_address", "aws_access_key", "github_token",
    "slack_token", "stripe_key", "openai_key", "private_key", "jwt", "aigov_token", "generic_secret",
    "prompt_injection", "invisible_text",
)
GROUPS: dict[str, tuple[str, ...]] = {
    "pii": DETECTOR_NAMES[:6], "secrets": DETECTOR_NAMES[6:15], "manipulation": DETECTOR_NAMES[15:],
}


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str
    start: int
    end: int
    message: str


class DetectorOptionError(ValueError):
    pass


class Scanner:
    def __init__(self, detectors: Mapping[str, Mapping[str, object]]) -> None:
        self.detectors = dict(detectors)

    def scan(self, text: str) -> list[Finding]:
        return []
