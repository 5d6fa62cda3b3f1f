"""`aigov loadtest`: an open-model load generator with SLA thresholds.

Kept import-light: the command imports the heavy modules lazily.
"""

from __future__ import annotations
