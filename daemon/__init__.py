"""aigov daemon library: configuration, storage, auth, rate limits, policy, decision log, HTTP app."""

from __future__ import annotations

__version__ = "0.1.0"
