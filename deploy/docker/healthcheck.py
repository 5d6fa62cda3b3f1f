"""The container's HEALTHCHECK: exit 0 when the daemon of this home answers /healthz, else 1.

It asks the address the daemon recorded in its pid file (so a port or TLS set in config.toml,
the environment or on the command line is followed), replacing a wildcard bind by loopback,
and trusts exactly the configured certificate when the daemon serves HTTPS.
"""

from __future__ import annotations

import sys
import urllib.request


def main() -> int:
    """Check once; print one line on failure."""
    from daemon.config import load_config
    from daemon.pidfile import daemon_running
    from daemon.tls import local_client_context

    try:
        cfg = load_config()
        info = daemon_running(cfg.paths.pid_file) or {}
        url = str(info.get("url") or cfg.url)
        url = url.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:")
        context = local_client_context(cfg) if url.startswith("https:") else None
        with urllib.request.urlopen(f"{url}/healthz", timeout=3, context=context) as r:
            ok = r.status == 200
    except Exception as e:  # anything at all means unhealthy; say what
        print(f"unhealthy: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
