"""Checks of the configuration and the policy: bind address, bcrypt cost, log_inputs, monitor mode, detectors."""

from __future__ import annotations

from aigov_cli.audit.model import AuditContext, Finding, Severity

MIN_BCRYPT_COST = 12


def check_bind_address(ctx: AuditContext) -> list[Finding]:
    """Beyond loopback the daemon must serve HTTPS (tls_cert/tls_key), or sit behind a TLS proxy."""
    from daemon.tls import is_loopback

    hosts = {ctx.config.host}
    info = ctx.daemon_info or {}
    url = info.get("url")
    plain = {ctx.config.host} if not ctx.config.tls else set()
    if isinstance(url, str) and "://" in url:
        scheme, rest = url.split("://", 1)
        host = rest.rsplit(":", 1)[0]
        hosts.add(host)
        if scheme == "http":
            plain.add(host)
    out = []
    for host in sorted(hosts & plain):
        if is_loopback(host):
            continue
        everywhere = host.strip("[]") in ("0.0.0.0", "::", "")
        out.append(Finding(
            "AG201", "daemon serves plain HTTP beyond loopback", Severity.MEDIUM,
            f"host = {host!r}" + (" (every interface)" if everywhere else "") + " without tls_cert/tls_key: "
            "tokens and prompts cross the network in clear text",
            "Set tls_cert and tls_key in config.toml (or AIGOV_TLS_CERT / AIGOV_TLS_KEY), or set "
            'host = "127.0.0.1" and put a TLS-terminating proxy in front.',
            location=str(ctx.config.paths.config_file),
        ))
    return out


def check_tls_key(ctx: AuditContext) -> list[Finding]:
    """The TLS private key must be readable by its owner only."""
    import stat
    from pathlib import Path

    if not ctx.config.tls:
        return []
    key = Path(ctx.config.tls_key).expanduser()
    try:
        mode = stat.S_IMODE(key.stat().st_mode)  # stat, not lstat: Kubernetes mounts secrets as links
    except OSError as e:
        return [Finding("AG202", "TLS key cannot be read", Severity.HIGH, f"{key}: {e.strerror}",
                        "Point tls_key at the key file and make it readable by the user that runs aigov.",
                        location=str(key))]
    if not mode & 0o077:
        return []
    return [Finding("AG202", "TLS private key is readable by others", Severity.MEDIUM,
                    f"{key} has mode {mode:04o}", f"chmod 600 {key}", location=str(key))]


def check_bcrypt_cost(ctx: AuditContext) -> list[Finding]:
    """bcrypt cost must be at least 12, in the config and in the stored key hashes."""
    out = []
    cfg = ctx.config
    if cfg.bcrypt_cost < MIN_BCRYPT_COST:
        out.append(Finding(
            "AG301", "bcrypt cost below 12", Severity.MEDIUM,
            f"bcrypt_cost = {cfg.bcrypt_cost}", "Set bcrypt_cost = 12 (or more) in config.toml, then rotate keys.",
            location=str(cfg.paths.config_file),
        ))
    if ctx.db_exists():
        weak: list[str] = []
        for key_id, raw in ((k.key_id, k.secret_hash) for k in ctx.keys() if k.revoked_at is None):
            parts = raw.split(b"$")
            if len(parts) > 2 and parts[2].isdigit() and int(parts[2]) < MIN_BCRYPT_COST:
                weak.append(f"{key_id} (cost {int(parts[2])})")
        if weak:
            out.append(Finding(
                "AG301", "API keys hashed with bcrypt cost below 12", Severity.MEDIUM,
                f"{len(weak)} active key(s): {', '.join(weak[:10])}" + (" ..." if len(weak) > 10 else ""),
                "Raise bcrypt_cost to 12, then `aigov keys rotate KEY_ID` for each key listed.",
                location=ctx.db_location,
            ))
    return out


def check_log_inputs(ctx: AuditContext) -> list[Finding]:
    """``log_inputs = "full"`` keeps raw prompts, secrets included, in the decision log."""
    if ctx.config.log_inputs != "full":
        return []
    return [Finding(
        "AG403", 'decision log stores full inputs (log_inputs = "full")', Severity.HIGH,
        'log_inputs = "full": every prompt, including secrets and personal data the detectors found, is stored',
        'Set log_inputs = "redacted" (or "none") in config.toml.',
        location=str(ctx.config.paths.config_file),
    )]


def check_policy(ctx: AuditContext) -> list[Finding]:
    """Policies must load, enforce (not monitor), and run every built-in detector."""
    from daemon.errors import AigovError
    from daemon.policy.detectors import DETECTOR_NAMES
    from daemon.policy.loader import load_policy_file
    from daemon.policy.model import Mode

    path = ctx.config.policy_path
    try:
        policies = load_policy_file(path)
    except AigovError as e:
        return [Finding("AG404", "policy file is invalid", Severity.HIGH, str(e),
                        "Fix the file (`aigov policy check` says where); the daemon will not start or reload "
                        "with it.", location=str(path))]
    out = []
    for name, pol in policies.policies.items():
        if pol.mode is Mode.MONITOR:
            out.append(Finding(
                "AG401", f"policy {name!r} is in monitor mode", Severity.HIGH,
                f'[policies.{name}] mode = "monitor": findings are reported but nothing is blocked',
                f'Set mode = "enforce" in [policies.{name}] of {path}.', location=str(path),
            ))
        missing = [d for d in DETECTOR_NAMES if d not in pol.detector_rules]
        if missing:
            out.append(Finding(
                "AG402", f"policy {name!r} has built-in detectors switched off", Severity.MEDIUM,
                f"not run: {', '.join(missing)}",
                f"Add (or re-enable) a rule for each detector in [policies.{name}]; `aigov init --force` "
                "writes a policy that runs them all.", location=str(path),
            ))
    return out
