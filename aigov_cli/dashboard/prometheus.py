"""A Prometheus scrape configuration for the local daemon."""

from __future__ import annotations

import urllib.parse


def scrape_config(url: str, job: str = "aigov", interval: str = "15s") -> str:
    """The ``scrape_configs`` YAML for the daemon at ``url``."""
    u = urllib.parse.urlsplit(url)
    host = u.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    port = u.port or (443 if u.scheme == "https" else 80)
    return (
        "# Prometheus scrape configuration for aigov; add it under scrape_configs in prometheus.yml.\n"
        "scrape_configs:\n"
        f"  - job_name: {job}\n"
        f"    scrape_interval: {interval}\n"
        f"    metrics_path: /metrics\n"
        f"    scheme: {u.scheme or 'http'}\n"
        "    static_configs:\n"
        f"      - targets: ['{host}:{port}']\n"
    )
