"""Error reporting to Sentry (``sentry_dsn``; the optional extra ``aigov[sentry]``).

What is reported: every record the daemon logs at ERROR or above (an unexpected exception in a
handler, a failing decision-log write, a rejected policy reload) and uncaught exceptions, with
release ``aigov@VERSION`` and ``sentry_environment``. What never leaves the process:

- request data: no local variables of any frame (the check handler holds the prompt, the
  raw body and the token there), no request bodies, cookies or query strings;
- credentials: ``Authorization``, ``X-Api-Key``, ``Cookie`` and ``Proxy-Authorization`` headers
  are replaced, and any aigov token or ``Bearer`` value in any string is masked;
- input text: the daemon never puts a prompt in a log message or an exception it raises itself;
  as a second line of defence every other string of the event (exception messages, log messages,
  breadcrumbs, extra data) goes through the built-in detectors and each finding (card numbers,
  SSNs, IBANs, e-mail addresses, phone numbers, secrets, keys) is masked.

Only the integrations listed in :func:`init_sentry` run: the SDK's automatic ones would, among
other things, wrap every aiohttp request (cost on the hot path, and request data in events).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from daemon import __version__
from daemon.errors import ConfigError

if TYPE_CHECKING:
    from sentry_sdk.types import Event, Hint

    from daemon.config import Config
    from daemon.policy.detectors import Scanner

FILTERED = "[Filtered]"
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "cookie", "set-cookie"})
_TOKEN = re.compile(r"aigov_[a-z2-7]{12}_[0-9A-Za-z]{6,}")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[^\s'\",]+")
# Keys whose values are the SDK's own structure (names, ids, paths of aigov's code), never request data.
_STRUCTURAL = frozenset({
    "event_id", "timestamp", "start_timestamp", "platform", "level", "logger", "release", "environment",
    "server_name", "type", "module", "function", "filename", "abs_path", "lineno", "colno", "in_app",
    "pre_context", "context_line", "post_context", "package", "instruction_addr", "category", "sdk",
    "mechanism", "thread_id", "contexts",
})
_DROP = frozenset({"vars", "request", "user", "cookies"})
MAX_STRING = 1000


def init_sentry(config: Config) -> bool:
    """Start reporting to ``config.sentry_dsn``; False (and nothing done) when it is empty."""
    if not config.sentry_dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.atexit import AtexitIntegration
        from sentry_sdk.integrations.dedupe import DedupeIntegration
        from sentry_sdk.integrations.excepthook import ExcepthookIntegration
        from sentry_sdk.integrations.logging import LoggingIntegration
        from sentry_sdk.integrations.threading import ThreadingIntegration
    except ImportError:
        raise ConfigError("sentry_dsn is set but sentry-sdk is not installed: pip install 'aigov[sentry]'") from None
    try:
        sentry_sdk.init(
            dsn=config.sentry_dsn,
            release=f"aigov@{__version__}",
            environment=config.sentry_environment,
            default_integrations=False,
            auto_enabling_integrations=False,
            integrations=[
                LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
                ExcepthookIntegration(),
                DedupeIntegration(),
                AtexitIntegration(),
                ThreadingIntegration(propagate_scope=False),
            ],
            send_default_pii=False,
            include_local_variables=False,
            max_request_body_size="never",
            auto_session_tracking=False,
            traces_sample_rate=None,
            before_send=scrub_event,
        )
    except Exception as e:  # BadDsn and the like: the DSN itself is never echoed
        raise ConfigError(f"sentry_dsn is not usable: {type(e).__name__}") from None
    return True


@functools.cache
def _scanner() -> Scanner:
    from daemon.policy.detectors import DETECTOR_NAMES, Scanner

    return Scanner({name: {} for name in DETECTOR_NAMES})


def scrub_text(text: str) -> str:
    """``text`` with tokens, credentials and every detector finding masked, at most MAX_STRING characters."""
    from daemon.policy.engine import redact

    if len(text) > MAX_STRING:
        text = text[:MAX_STRING] + "..."
    text = _TOKEN.sub("[aigov token]", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {FILTERED}", text)
    spans = [(f.start, f.end, f.detector) for f in _scanner().scan(text)]
    return redact(text, spans) if spans else text


def _scrub(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list | tuple):
        return [_scrub(v, scrub) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k).lower()
            if key in _DROP:
                continue
            if key in SENSITIVE_HEADERS:
                out[k] = FILTERED
            elif key in _STRUCTURAL:
                out[k] = v
            else:
                out[k] = _scrub(v, scrub)
        return out
    return value


def scrub_event(event: Event, hint: Hint | None = None) -> Event:
    """Sentry's ``before_send``: drop frame variables and request data, mask credentials and findings."""
    try:
        scrubbed: Event = _scrub(event, scrub_text)
        return scrubbed
    except Exception:  # never send an event that could not be scrubbed: send that it happened
        kept: Any = {k: v for k, v in event.items() if k in ("event_id", "timestamp", "level", "release",
                                                             "environment")}
        kept["message"] = "aigov: an error event was withheld because it could not be scrubbed"
        return kept  # type: ignore[no-any-return]


__all__ = ["init_sentry", "scrub_event", "scrub_text"]
