"""The governance policy: model, TOML loading, built-in detectors and the engine."""

from __future__ import annotations
