"""A Prometheus scrape job for the local daemon, or a whole ``prometheus.yml`` holding it."""

from __future__ import annotations

import json
import re
import urllib.parse

# Prometheus's duration syntax (model.ParseDuration): units largest first, each at most once.
_DURATION = re.compile(r"(?:\d+y)?(?:\d+w)?(?:\d+d)?(?:\d+h)?(?:\d+m)?(?:\d+s)?(?:\d+ms)?")


def check_interval(interval: str) -> bool:
    """Whether ``interval`` is a Prometheus duration such as ``15s``, ``1m`` or ``1m30s``."""
    return bool(interval) and interval != "0" and _DURATION.fullmatch(interval) is not None


def _target(url: str) -> tuple[str, str]:
    u = urllib.parse.urlsplit(url)
    host = u.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = u.port or (443 if u.scheme == "https" else 80)
    return f"{host}:{port}", u.scheme or "http"


def scrape_job(url: str, job: str = "aigov", interval: str = "15s") -> str:
    """One ``scrape_configs`` entry (a YAML list item, indented two spaces) for the daemon at ``url``.

    Appended to a ``prometheus.yml`` whose last section is ``scrape_configs:`` with its items
    indented two spaces (Prometheus's own example file, Debian's), the result is a valid file.
    """
    target, scheme = _target(url)
    return (
        f"  - job_name: {json.dumps(job)}\n"  # a JSON string is a YAML string: any name is safe
        f"    scrape_interval: {interval}\n"
        "    metrics_path: /metrics\n"
        f"    scheme: {scheme}\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )


def job_text(url: str, job: str = "aigov", interval: str = "15s") -> str:
    """What ``aigov dashboard prometheus-config`` prints: the job, with how to use it."""
    return (
        "# aigov scrape job: goes under scrape_configs: in prometheus.yml (appending it with >> works when\n"
        "# scrape_configs: is the file's last section, items indented two spaces). A whole file instead:\n"
        "#   aigov dashboard prometheus-config --full > prometheus.yml\n"
        + scrape_job(url, job, interval)
    )


def full_config(url: str, job: str = "aigov", interval: str = "15s") -> str:
    """A complete ``prometheus.yml`` that scrapes only the daemon (``promtool check config`` accepts it)."""
    return (
        "# Prometheus configuration for aigov (aigov dashboard prometheus-config --full).\n"
        "global:\n"
        f"  scrape_interval: {interval}\n"
        f"  evaluation_interval: {interval}\n"
        "\n"
        "scrape_configs:\n"
        + scrape_job(url, job, interval)
    )
