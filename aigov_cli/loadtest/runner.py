"""Orchestration of a run: target checks, temporary keys, phases per mode, sampling, interruption."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import signal
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from aigov_cli.client import TLS_NAME_MISMATCH
from aigov_cli.loadtest.corpus import PROBE_BODY, Corpus
from aigov_cli.loadtest.engine import EngineConfig, PhaseResult, Tally, Tick
from aigov_cli.loadtest.histogram import Histogram
from aigov_cli.loadtest.keys import KeyAdmin, KeyAdminError, TempKeys
from aigov_cli.loadtest.scenarios import MAX_REQUESTS, Mode, PhaseSpec, stress_stages
from aigov_cli.loadtest.target import QUEUE_METRIC, RSS_METRIC, NotHTTP, Target, request, sample_metrics
from aigov_cli.loadtest.thresholds import (
    Stats,
    Threshold,
    ThresholdResult,
    default_thresholds,
    evaluate,
    merge_thresholds,
)
from aigov_cli.loadtest.workers import Executor, LocalExecutor, ProcessExecutor

PROBE_WINDOW_S = 86_400.0
"""Probe keys refill over a day, so no token comes back during a burst."""


class RunError(RuntimeError):
    """The run cannot start (no daemon, rejected key, ...): a configuration error, exit 2."""


@dataclass(frozen=True)
class RunOptions:
    """Everything that defines a run; built by the command from its flags."""

    mode: Mode
    target: Target
    key: str | None
    rate: float
    duration_s: float
    interval_s: float
    thresholds: tuple[Threshold, ...]
    corpus: Corpus
    workers: int = 1
    connections: int | None = None
    timeout_s: float = 10.0
    max_requests: int = MAX_REQUESTS
    burst_size: int = 100
    burst_every_s: float = 5.0
    probe_limit: int = 25
    probes: int = 3
    stage_s: float = 5.0
    step: float = 1.5


@dataclass
class LiveState:
    """Cumulative numbers for the live progress display."""

    mode: Mode
    planned_s: float
    started: float = 0.0
    label: str = ""
    target_rate: float = 0.0
    main: Tally = field(default_factory=Tally)
    probe: Tally = field(default_factory=Tally)
    late: int = 0
    hist: Histogram = field(default_factory=Histogram)
    queue_depth: float | None = None
    rss_bytes: float | None = None
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

    def elapsed(self) -> float:
        """Seconds since the run started (0 until then: the first requests are scheduled a moment ahead)."""
        return max(0.0, time.monotonic() - self.started) if self.started else 0.0

    def achieved_rate(self) -> float:
        """Starts per second over the last two seconds or so."""
        if len(self.recent) < 2:
            return 0.0
        now = self.recent[-1][0]
        old = self.recent[0]
        for t, n in self.recent:
            if now - t <= 2.0:
                old = (t, n)
                break
        span = now - old[0]
        return (self.recent[-1][1] - old[1]) / span if span > 0 else 0.0


class Observer(Protocol):
    """Receives progress; the rich display implements it, tests and --quiet use a no-op."""

    def update(self, state: LiveState) -> None:
        """New numbers are available."""

    def warn(self, message: str) -> None:
        """Something the operator should know, as it happens."""


class NullObserver:
    """Ignores progress; collects warnings."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def update(self, state: LiveState) -> None:
        """Ignore."""

    def warn(self, message: str) -> None:
        """Remember the warning."""
        self.warnings.append(message)


@dataclass
class HistoryRow:
    """One interval of the run."""

    t_s: float
    length_s: float
    phase: int
    target_rate: float
    main: Tally = field(default_factory=Tally)
    late: int = 0
    hist: Histogram = field(default_factory=Histogram)
    queue_depth: float | None = None
    rss_bytes: float | None = None


@dataclass
class StageOutcome:
    """One phase with its verdict (stress stages are judged one by one)."""

    index: int
    spec: PhaseSpec
    result: PhaseResult
    offset_s: float
    queue_depth_max: float | None
    met_sla: bool
    generator_bound: bool
    thresholds: list[ThresholdResult]


@dataclass
class Sample:
    """One scrape of the daemon's /metrics."""

    t_s: float
    queue_depth: float | None
    rss_bytes: float | None


@dataclass
class RunData:
    """Everything measured in a run; :mod:`report` turns it into the JSON document."""

    options: RunOptions
    started_at: str
    finished_at: str = ""
    duration_s: float = 0.0
    interrupted: bool = False
    key_kind: str = "provided"
    total: PhaseResult = field(default_factory=lambda: PhaseResult(phase=0, spec=PhaseSpec(0, 0), workers=0))
    stages: list[StageOutcome] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    probe_expected: dict[int, int] = field(default_factory=dict)
    probe_limits: dict[int, int] = field(default_factory=dict)
    breaking_point: float | None = None
    max_rate_met: float | None = None
    warnings: list[str] = field(default_factory=list)
    thresholds: list[ThresholdResult] = field(default_factory=list)
    keys_created: int = 0
    keys_deleted: int = 0

    def rate_limit_accuracy(self) -> float | None:
        """Percent of probe decisions that matched the key's limit exactly, or None if not probed."""
        expected_total = 0
        wrong = 0
        for tag, counts in self.total.probes.items():
            expected = self.probe_expected.get(tag)
            if expected is None or counts[0] == 0:
                continue
            expected_total += expected
            wrong += abs(counts[1] - expected)
        if expected_total == 0:
            return None
        return max(0.0, 100.0 * (1 - wrong / expected_total))

    def queue_depth_max(self) -> float | None:
        """The largest queue depth seen in /metrics, or None if never sampled."""
        values = [s.queue_depth for s in self.samples if s.queue_depth is not None]
        return max(values) if values else None


def stats_of(
    result: PhaseResult,
    queue_depth: float | None,
    accuracy: float | None = None,
    breaking_point: float | None = None,
    not_measured: dict[str, str] | None = None,
) -> Stats:
    """The threshold inputs of a result (the main traffic's: probes are judged by accuracy alone)."""
    return Stats(
        latency=result.latency,
        error_rate=result.error_rate,
        rate_limit_accuracy=accuracy,
        queue_depth=queue_depth,
        rps=result.main.completed / result.wall_s if result.wall_s > 0 else None,
        breaking_point=breaking_point,
        not_measured=not_measured or {},
    )


def generator_bound(result: PhaseResult) -> bool:
    """Whether the sender itself (not the server) kept a phase from its schedule."""
    busy = result.max_cpu_ratio >= 0.85
    sent = result.main.sent + result.probe.sent
    behind = result.dispatch_max_lag_s > 0.1 or (sent and result.dispatch_late / sent > 0.01)
    return bool(busy and behind)


def default_connections(specs: Sequence[PhaseSpec], timeout_s: float) -> int:
    """Enough connections for the largest burst and a few hundred ms of latency at the peak rate."""
    peak = max((s.rate for s in specs), default=1.0)
    simultaneous = max((s.max_simultaneous() for s in specs), default=1)
    return int(min(2000, max(64, simultaneous + 16, math.ceil(peak * 0.25))))


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plan(opts: RunOptions) -> list[PhaseSpec]:
    """The phases of a run (for stress, the most stages that fit in the duration)."""
    if opts.mode is Mode.stress:
        stages = stress_stages(opts.rate, opts.step, opts.stage_s, opts.duration_s)
        if not stages:
            raise RunError("the stress duration is shorter than one stage: raise --duration")
        return stages
    if opts.mode is Mode.burst:
        spec = PhaseSpec(
            rate=opts.rate,
            duration_s=opts.duration_s,
            burst_size=opts.burst_size,
            burst_every_s=opts.burst_every_s,
            max_requests=opts.max_requests,
        )
        n_probes = min(opts.probes, len(spec.burst_offsets())) if opts.key is None else 0
        probe_sizes = tuple(2 * opts.probe_limit for _ in range(n_probes))
        return [
            PhaseSpec(
                rate=spec.rate,
                duration_s=spec.duration_s,
                burst_size=spec.burst_size,
                burst_every_s=spec.burst_every_s,
                probe_sizes=probe_sizes,
                max_requests=opts.max_requests,
            )
        ]
    return [PhaseSpec(rate=opts.rate, duration_s=opts.duration_s, max_requests=opts.max_requests)]


async def _warm_up(target: Target, token: str, body: bytes, what: str) -> int:
    """One request with a fresh key (so bcrypt is not in the measurements); returns its status."""
    deadline = time.monotonic() + 3.0
    while True:
        try:
            resp = await request(
                target,
                "POST",
                "/v1/check",
                body=body,
                timeout_s=10.0,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
        except (TimeoutError, OSError, ValueError, IndexError) as exc:
            raise RunError(f"warm-up request with the {what} failed: {exc}") from None
        # A key created a moment ago may take up to a second to be seen by the daemon.
        if resp.status == 401 and what != "--key" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            continue
        return resp.status


class _Collector:
    """Merges ticks from all workers into live state and history rows."""

    def __init__(self, state: LiveState, observer: Observer, interval_s: float, tick_s: float) -> None:
        self.state = state
        self.observer = observer
        self.interval_s = interval_s
        self.tick_s = tick_s
        self.rows: dict[tuple[int, int], HistoryRow] = {}
        self.phase_offset: dict[int, float] = {}
        self.phase_rate: dict[int, float] = {}
        self.phase_len: dict[int, float] = {}

    def on_tick(self, tick: Tick) -> None:
        s = self.state
        s.main.merge(tick.main)
        s.probe.merge(tick.probe)
        s.late += tick.late
        s.hist.merge(tick.hist)
        s.recent.append((time.monotonic(), s.main.sent + s.probe.sent))
        row_i = int(tick.index * self.tick_s / self.interval_s + 1e-9)
        key = (tick.phase, row_i)
        row = self.rows.get(key)
        if row is None:
            offset = self.phase_offset.get(tick.phase, 0.0)
            row = self.rows[key] = HistoryRow(
                t_s=offset + row_i * self.interval_s,
                length_s=self.interval_s,
                phase=tick.phase,
                target_rate=self.phase_rate.get(tick.phase, 0),
            )
        row.main.merge(tick.main)
        row.late += tick.late
        row.hist.merge(tick.hist)
        self.observer.update(s)

    def history(self, samples: list[Sample]) -> list[HistoryRow]:
        rows = sorted(self.rows.values(), key=lambda r: (r.phase, r.t_s))
        out: list[HistoryRow] = []
        for r in rows:
            offset = self.phase_offset.get(r.phase, 0.0)
            end = offset + self.phase_len.get(r.phase, math.inf)
            if r.t_s >= end - 1e-9 and not (r.main.sent or r.main.completed or r.main.abandoned):
                continue
            r.length_s = max(1e-3, min(self.interval_s, end - r.t_s)) if r.t_s < end else self.interval_s
            inside = [s for s in samples if r.t_s <= s.t_s < r.t_s + self.interval_s]
            q = [s.queue_depth for s in inside if s.queue_depth is not None]
            m = [s.rss_bytes for s in inside if s.rss_bytes is not None]
            r.queue_depth = max(q) if q else None
            r.rss_bytes = m[-1] if m else None
            out.append(r)
        return out


async def run_loadtest(opts: RunOptions, admin: KeyAdmin | None, observer: Observer) -> RunData:
    """Run the whole load test and return what was measured (never raises on Ctrl-C)."""
    target = opts.target
    specs = plan(opts)
    data = RunData(options=opts, started_at=_iso_now(), key_kind="provided" if opts.key else "temporary")
    try:
        health = await request(target, "GET", "/healthz", timeout_s=5.0)
    except ssl.SSLCertVerificationError as e:
        why = e.verify_message or e.reason
        if e.verify_code in TLS_NAME_MISMATCH:
            hint = "the certificate is for another host name or address: use a --url it names"
        elif target.ca_file is not None:
            hint = f"--ca-file {target.ca_file} did not sign it: pass the CA that did"
        else:
            hint = "pass the CA that signed it with --ca-file FILE"
        raise RunError(f"the certificate of {target.url} did not verify ({why}): {hint}") from None
    except (NotHTTP, ConnectionResetError):  # something listens but does not speak HTTP: HTTPS, say
        hint = "; if the daemon serves HTTPS (tls_cert), use an https:// URL" if target.url.startswith("http:") else ""
        raise RunError(f"{target.url} took the connection but sent no HTTP answer{hint}") from None
    except (TimeoutError, OSError, ValueError, IndexError):
        raise RunError(f"no aigov daemon answers at {target.url} (start it with `aigov serve`)") from None
    if health.status != 200:
        raise RunError(f"{target.url}/healthz answered {health.status}: the daemon is not healthy")

    total_planned = sum(s.scheduled_count() for s in specs)
    all_thresholds = merge_thresholds(
        default_thresholds(opts.mode, bool(specs[0].probe_sizes)), opts.thresholds
    )
    temp = TempKeys(admin) if (opts.key is None and admin is not None) else None
    if opts.key is None and temp is None:
        raise RunError("no --key given and no key administration available")
    loop = asyncio.get_running_loop()
    executor: Executor | None = None
    sampler: asyncio.Task[None] | None = None
    sampling = asyncio.Event()  # set: stop sampling
    interrupted = False
    installed: list[signal.Signals] = []
    run_t0 = time.monotonic()
    try:
        probe_tokens: list[str] = []
        tag = os.getpid()
        expires = opts.duration_s + 3600.0
        if temp is not None:
            limit = int(min(1_000_000_000, max(1000, total_planned * 2 + 1000)))
            try:
                main_token = await asyncio.to_thread(
                    temp.create, f"loadtest-{opts.mode.value}-{tag}", limit, PROBE_WINDOW_S, expires
                )
                for j, _ in enumerate(specs[0].probe_sizes):
                    probe_tokens.append(
                        await asyncio.to_thread(
                            temp.create,
                            f"loadtest-probe-{tag}-{j + 1}",
                            opts.probe_limit,
                            PROBE_WINDOW_S,
                            expires,
                        )
                    )
            except KeyAdminError as exc:
                raise RunError(str(exc)) from None
        else:
            assert opts.key is not None
            main_token = opts.key
        probe_body = PROBE_BODY
        status = await _warm_up(
            target, main_token, opts.corpus.bodies[0], "--key" if opts.key else "temporary key"
        )
        if status == 401:
            if opts.key:
                raise RunError("the daemon rejected --key (401 unauthorized)")
            raise RunError(
                f"the daemon at {target.url} rejected a temporary key: is it running with the "
                "same AIGOV_HOME? Otherwise pass --key TOKEN"
            )
        if status == 429:
            observer.warn("the key is already rate limited: expect 429s (use a key with a higher limit)")
        for j, token in enumerate(probe_tokens):
            probe_status = await _warm_up(target, token, probe_body, "probe key")
            if probe_status != 200:
                raise RunError(f"rate-limit probe key warm-up answered {probe_status}")
            data.probe_limits[j + 1] = opts.probe_limit
            data.probe_expected[j + 1] = opts.probe_limit - 1  # the warm-up took one token

        tick_s = opts.interval_s / max(1, math.ceil(opts.interval_s / 0.5))
        connections = opts.connections or default_connections(specs, opts.timeout_s)
        cfg = EngineConfig(
            host=target.host,
            port=target.port,
            host_header=target.host_header,
            path=target.check_path,
            main_token=main_token,
            bodies=opts.corpus.bodies,
            probe_tokens=tuple(probe_tokens),
            probe_body=probe_body,
            connections=connections,
            timeout_s=opts.timeout_s,
            tick_s=tick_s,
            tls=target.tls,
            server_hostname=target.server_hostname,
            ca_file=target.ca_file,
            pinned_cert=target.pinned_cert,
        )
        executor = LocalExecutor(cfg) if opts.workers <= 1 else ProcessExecutor(cfg, opts.workers)
        await executor.start()

        planned_s = sum(s.duration_s for s in specs)
        state = LiveState(mode=opts.mode, planned_s=planned_s)
        collector = _Collector(state, observer, opts.interval_s, tick_s)

        def on_signal() -> None:
            nonlocal interrupted
            if not interrupted:
                interrupted = True
                observer.warn("interrupted: stopping, then printing the partial summary")
            if executor is not None:
                executor.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal)
                installed.append(sig)

        run_t0 = (
            time.monotonic() + (0.05 if opts.workers <= 1 else 0.3) + (0.3 if specs[0].burst_size else 0.0)
        )
        state.started = run_t0
        sampler = asyncio.ensure_future(
            _sample(target, data, state, observer, run_t0, min(1.0, opts.interval_s), sampling)
        )
        budget = opts.max_requests
        offset = 0.0
        stage_thresholds = [
            t for t in all_thresholds if t.metric not in ("breaking_point", "rate_limit_accuracy")
        ]
        for i, spec in enumerate(specs):
            if interrupted or budget <= 0:
                break
            spec = replace(spec, max_requests=min(spec.max_requests, budget))
            lead = (0.02 if opts.workers <= 1 else 0.2) + (
                0.3 if spec.burst_size or spec.probe_sizes else 0.0
            )
            t0 = max(run_t0 + offset, time.monotonic() + lead)
            offset = t0 - run_t0
            collector.phase_offset[i] = offset
            collector.phase_rate[i] = spec.rate
            collector.phase_len[i] = spec.duration_s
            state.label = f"stage {i + 1}/{len(specs)}" if opts.mode is Mode.stress else opts.mode.value
            state.target_rate = spec.rate
            res = await executor.run_phase(i, spec, t0, collector.on_tick)
            budget -= res.main.sent + res.probe.sent
            offset += max(spec.duration_s, res.wall_s)
            window = [
                s.queue_depth
                for s in data.samples
                if s.queue_depth is not None and collector.phase_offset[i] <= s.t_s <= offset + 0.5
            ]
            qmax = max(window) if window else None
            verdicts = evaluate(stage_thresholds, stats_of(res, qmax))
            gen = generator_bound(res)
            met = all(v.ok for v in verdicts) and not res.interrupted
            data.stages.append(
                StageOutcome(
                    index=i,
                    spec=spec,
                    result=res,
                    offset_s=collector.phase_offset[i],
                    queue_depth_max=qmax,
                    met_sla=met,
                    generator_bound=gen,
                    thresholds=verdicts,
                )
            )
            if gen:
                observer.warn(
                    f"the generator is the bottleneck: it could not keep {spec.rate:g} req/s "
                    f"(CPU {res.max_cpu_ratio:.0%} of a core); use --workers "
                    f"{max(2, opts.workers * 2)}"
                )
            if opts.mode is Mode.stress and (not met or gen):
                break
        if sampler is not None:
            # A flag, not cancel(): 3.11's wait_for can swallow a cancellation (python/cpython#86296).
            sampling.set()
            await asyncio.wait({sampler}, timeout=5)
            sampler = None
            final = await sample_metrics(target)
            if final is not None:
                data.samples.append(
                    Sample(
                        t_s=time.monotonic() - run_t0,
                        queue_depth=final.get(QUEUE_METRIC),
                        rss_bytes=final.get(RSS_METRIC),
                    )
                )
        data.history = collector.history(data.samples)
    finally:
        for installed_sig in installed:
            loop.remove_signal_handler(installed_sig)
        sampling.set()
        if sampler is not None:
            sampler.cancel()
        if executor is not None:
            await executor.close()
        if temp is not None:
            # Delete even when cancelled; a thread because the key library runs its own event loop.
            deleting = asyncio.ensure_future(asyncio.to_thread(temp.delete_all))
            try:
                await asyncio.shield(deleting)
            except asyncio.CancelledError:
                await deleting
                raise
            data.keys_created = len(temp.created)
            data.keys_deleted = len(temp.deleted)
            for failure in temp.failures:
                data.warnings.append(f"could not delete temporary key {failure}")
    data.interrupted = interrupted or any(s.result.interrupted for s in data.stages)
    data.finished_at = _iso_now()
    data.duration_s = max(0.0, time.monotonic() - run_t0)
    for st in data.stages:
        data.total.merge(st.result)
    data.total.workers = opts.workers
    data.total.spec = PhaseSpec(rate=opts.rate, duration_s=sum(st.spec.duration_s for st in data.stages))
    data.total.wall_s = sum(st.result.wall_s for st in data.stages)
    data.total.schedule_s = sum(st.result.schedule_s for st in data.stages)
    not_measured: dict[str, str] = {}
    if opts.mode is Mode.stress:
        met_rates = []
        for st in data.stages:
            if not st.met_sla:
                break
            met_rates.append(st.spec.rate)
        data.max_rate_met = max(met_rates) if met_rates else None
        broke = any(not st.met_sla for st in data.stages)
        # The breaking point is the highest rate that met the SLA *below one that did not*: when
        # every stage met it, there is none to report, and a threshold on it is skipped.
        data.breaking_point = data.max_rate_met if broke else None
        if not broke:
            not_measured["breaking_point"] = "not reached"
        judged = PhaseResult(phase=0, spec=PhaseSpec(0, 0), workers=0)
        qmaxes: list[float] = []
        for st in data.stages[: max(1, len(met_rates))]:
            judged.merge(st.result)
            judged.wall_s += st.result.wall_s
            if st.queue_depth_max is not None:
                qmaxes.append(st.queue_depth_max)
        stats = stats_of(
            judged, max(qmaxes) if qmaxes else None, data.rate_limit_accuracy(), data.breaking_point, not_measured
        )
    else:
        stats = stats_of(data.total, data.queue_depth_max(), data.rate_limit_accuracy())
    data.thresholds = evaluate(all_thresholds, stats)
    return data


async def _sample(
    target: Target,
    data: RunData,
    state: LiveState,
    observer: Observer,
    run_t0: float,
    period: float,
    stop: asyncio.Event,
) -> None:
    """Scrape /metrics every ``period`` seconds for queue depth and RSS."""
    k = 0
    while not stop.is_set():
        values = await sample_metrics(target, timeout_s=max(0.5, period))
        if values is not None:
            s = Sample(
                t_s=time.monotonic() - run_t0,
                queue_depth=values.get(QUEUE_METRIC),
                rss_bytes=values.get(RSS_METRIC),
            )
            data.samples.append(s)
            state.queue_depth = s.queue_depth
            state.rss_bytes = s.rss_bytes
            observer.update(state)
        k += 1
        delay = run_t0 + k * period - time.monotonic()
        end = time.monotonic() + max(0.05, delay)
        while not stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))
