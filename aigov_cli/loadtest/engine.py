"""The open-model sender: a raw asyncio HTTP/1.1 keep-alive client driven by an arrival schedule.

Every request has an *intended* start time from the schedule. It is written on
an idle keep-alive connection at that time, or, when none is idle, queued while
a new connection opens (up to ``connections``). Latency is measured from the
intended time, not from the moment the bytes left, so a stalled server shows up
in the percentiles instead of silently slowing the sender down (wrk2's
coordinated-omission correction). The uncorrected service time is kept beside
it. Requests are pre-encoded; responses are parsed only as far as the status
line, ``Content-Length``/chunked framing and ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from aigov_cli.loadtest.corpus import PROBE_BODY
from aigov_cli.loadtest.histogram import Histogram
from aigov_cli.loadtest.scenarios import LATE_THRESHOLD_S, Pacer, PhaseSpec, iter_schedule

MAX_HEADER_BYTES = 64 * 1024
DISPATCH_BATCH = 256


@dataclass(frozen=True)
class EngineConfig:
    """Everything a sender needs; picklable so worker processes get their own copy."""

    host: str
    port: int
    host_header: str
    path: str
    main_token: str
    bodies: tuple[bytes, ...]
    probe_tokens: tuple[str, ...] = ()
    probe_body: bytes = PROBE_BODY
    connections: int = 256
    timeout_s: float = 10.0
    tick_s: float = 0.5
    tls: bool = False  # https: the context is built in each process (an SSLContext does not pickle)
    server_hostname: str | None = None
    ca_file: str | None = None
    pinned_cert: str | None = None


def encode_request(cfg: EngineConfig, token: str, body: bytes) -> bytes:
    """One complete pre-encoded POST request."""
    head = (
        f"POST {cfg.path} HTTP/1.1\r\n"
        f"Host: {cfg.host_header}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        "User-Agent: aigov-loadtest\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


@dataclass
class Tally:
    """Outcomes of requests, each counted once: the only counts any report reads.

    A request is *sent* when its turn in the schedule comes (written on a connection, or queued
    for one) and then ends in exactly one outcome: ``ok`` (2xx), ``rate_limited`` (429),
    ``errors`` (any other answer, a timeout, a failed or lost connection) or ``abandoned``
    (still unanswered when the run stopped). So ``sent == completed + abandoned`` once a phase
    is over and ``completed == ok + rate_limited + errors`` always.
    """

    sent: int = 0
    ok: int = 0
    rate_limited: int = 0
    errors: int = 0
    abandoned: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def completed(self) -> int:
        """Requests with an outcome: an answer, a timeout or a connection failure."""
        return self.ok + self.rate_limited + self.errors

    def answered(self, status: int) -> None:
        """Count an HTTP answer."""
        st = self.statuses
        st[status] = st.get(status, 0) + 1
        if 200 <= status < 300:
            self.ok += 1
        elif status == 429:
            self.rate_limited += 1
        else:
            self.failed(f"http_{status // 100}xx")

    def failed(self, kind: str) -> None:
        """Count an error of ``kind`` (``timeout``, ``connect``, ``http_5xx``...)."""
        self.errors += 1
        kinds = self.error_kinds
        kinds[kind] = kinds.get(kind, 0) + 1

    def merge(self, other: Tally) -> None:
        """Add another tally (another tick, worker or phase)."""
        self.sent += other.sent
        self.ok += other.ok
        self.rate_limited += other.rate_limited
        self.errors += other.errors
        self.abandoned += other.abandoned
        for code, n in other.statuses.items():
            self.statuses[code] = self.statuses.get(code, 0) + n
        for kind, n in other.error_kinds.items():
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + n


@dataclass
class Tick:
    """What happened during one progress tick of one phase (deltas, mergeable across workers).

    The engine counts into ticks only; a phase's totals are the sum of its ticks, so the live
    display (which adds ticks up as they come) and the final report cannot disagree.
    """

    phase: int
    index: int
    main: Tally = field(default_factory=Tally)
    probe: Tally = field(default_factory=Tally)
    late: int = 0
    hist: Histogram = field(default_factory=Histogram)

    def merge(self, other: Tick) -> None:
        """Add another worker's tick with the same phase and index."""
        self.main.merge(other.main)
        self.probe.merge(other.probe)
        self.late += other.late
        self.hist.merge(other.hist)


@dataclass
class PhaseResult:
    """Totals of one phase (one worker, or several merged)."""

    phase: int
    spec: PhaseSpec
    latency: Histogram = field(default_factory=Histogram)
    service: Histogram = field(default_factory=Histogram)
    main: Tally = field(default_factory=Tally)
    probe: Tally = field(default_factory=Tally)
    probes: dict[int, list[int]] = field(default_factory=dict)
    bytes_sent: int = 0
    bytes_received: int = 0
    late: int = 0
    max_lag_s: float = 0.0
    dispatch_late: int = 0
    dispatch_max_lag_s: float = 0.0
    pool_exhausted: int = 0
    connections_opened: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    schedule_s: float = 0.0
    max_cpu_ratio: float = 0.0
    interrupted: bool = False
    workers: int = 1

    @property
    def error_rate(self) -> float | None:
        """Errors per completed request of the main traffic (429s are not errors), or None."""
        done = self.main.completed
        return self.main.errors / done if done else None

    def merge(self, other: PhaseResult) -> None:
        """Fold another worker's result for the same phase into this one."""
        self.latency.merge(other.latency)
        self.service.merge(other.service)
        self.main.merge(other.main)
        self.probe.merge(other.probe)
        for name in (
            "bytes_sent",
            "bytes_received",
            "late",
            "dispatch_late",
            "pool_exhausted",
            "connections_opened",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for tag, counts in other.probes.items():
            mine = self.probes.setdefault(tag, [0, 0, 0, 0])
            for i, n in enumerate(counts):
                mine[i] += n
        self.max_lag_s = max(self.max_lag_s, other.max_lag_s)
        self.dispatch_max_lag_s = max(self.dispatch_max_lag_s, other.dispatch_max_lag_s)
        self.cpu_s += other.cpu_s
        self.wall_s = max(self.wall_s, other.wall_s)
        self.schedule_s = max(self.schedule_s, other.schedule_s)
        self.max_cpu_ratio = max(self.max_cpu_ratio, other.max_cpu_ratio)
        self.interrupted = self.interrupted or other.interrupted
        self.workers += other.workers


def _chunked_end(buf: bytes, start: int) -> int:
    """Index just past a complete chunked body starting at ``start``, or -1 if incomplete."""
    pos = start
    n = len(buf)
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return -1
        size_text = buf[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _ProtocolError("bad chunk size") from None
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)
            return end + 4 if end >= 0 else -1
        pos += size + 2
        if pos > n:
            return -1


class _ProtocolError(Exception):
    pass


class _Conn(asyncio.Protocol):
    """One keep-alive connection carrying at most one request at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.busy = False
        self.intended = 0.0
        self.sent_at = 0.0
        self.tag = 0
        self.body_start = -1
        self.need = -1
        self.status = 0
        self.chunked = False
        self.close_after = False
        self.dead = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.engine._connected(self)

    def send(self, data: bytes, intended: float, tag: int, now: float) -> None:
        self.busy = True
        self.intended = intended
        self.sent_at = now
        self.tag = tag
        self.buf = b""
        self.need = -1
        assert self.transport is not None
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            self._fail("protocol")
            return
        buf = self.buf + data if self.buf else data
        try:
            if self.need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > MAX_HEADER_BYTES:
                        raise _ProtocolError("header too long")
                    self.buf = buf
                    return
                if buf[:7] != b"HTTP/1.":
                    raise _ProtocolError("not HTTP/1.x")
                self.status = int(buf[9:12])
                self.body_start = end + 4
                raw_head = buf[:end]
                # Fast path: the canonical spelling servers (aiohttp included) use.
                cl = raw_head.find(b"\r\nContent-Length: ")
                if (
                    cl >= 0
                    and b"\r\nConnection:" not in raw_head
                    and b"\r\nTransfer-Encoding" not in raw_head
                ):
                    eol = raw_head.find(b"\r\n", cl + 18)
                    self.need = self.body_start + int(raw_head[cl + 18 : eol if eol >= 0 else end])
                    self.chunked = False
                    self.close_after = False
                else:
                    self._parse_head(raw_head.lower())
            if self.chunked:
                end_at = _chunked_end(buf, self.body_start)
                if end_at < 0:
                    self.buf = buf
                    return
                total = end_at
            else:
                total = self.need
                if len(buf) < total:
                    self.buf = buf
                    return
            if len(buf) > total:
                raise _ProtocolError("unexpected bytes after response")
        except (_ProtocolError, ValueError):
            self._fail("protocol")
            return
        self.buf = b""
        self.busy = False
        self.engine._response(self, self.status, len(buf))

    def _parse_head(self, head: bytes) -> None:
        self.close_after = b"\r\nconnection: close" in head
        cl = head.find(b"\r\ncontent-length:")
        if cl >= 0:
            eol = head.find(b"\r\n", cl + 17)
            self.need = self.body_start + int(head[cl + 17 : eol if eol >= 0 else len(head)])
            self.chunked = False
        elif b"\r\ntransfer-encoding: chunked" in head:
            self.chunked = True
            self.need = 0
        elif self.status in (204, 304) or 100 <= self.status < 200:
            self.need = self.body_start
            self.chunked = False
        else:
            raise _ProtocolError("response without length")

    def _fail(self, kind: str) -> None:
        if self.busy:
            self.busy = False
            self.engine._request_failed(self, kind)
        self.dead = True
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        was_busy = self.busy
        self.busy = False
        self.engine._lost(self, was_busy)


class Engine:
    """Sends phases of a schedule over a pool of keep-alive connections and measures them."""

    def __init__(self, cfg: EngineConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.main_reqs = [encode_request(cfg, cfg.main_token, b) for b in cfg.bodies]
        self.probe_reqs = [encode_request(cfg, t, cfg.probe_body) for t in cfg.probe_tokens]
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.backlog: deque[tuple[float, int]] = deque()
        self.connecting = 0
        self.in_flight = 0
        self.rr = 0
        self._stopping = False
        self._drained: asyncio.Event | None = None
        self._r = PhaseResult(phase=-1, spec=PhaseSpec(rate=0, duration_s=0))
        self._tick = Tick(phase=-1, index=0)
        self._connect_tasks: set[asyncio.Task[None]] = set()
        self._ssl: ssl.SSLContext | None = None
        if cfg.tls:
            from daemon.tls import client_context

            self._ssl = client_context(ca_file=cfg.ca_file, pinned_cert=cfg.pinned_cert)

    # -- control -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop scheduling new requests; the current phase finishes what is in flight briefly."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._stopping

    def close(self) -> None:
        """Abort every connection."""
        for c in list(self.conns):
            if c.transport is not None:
                c.transport.abort()
        self.idle.clear()
        for t in self._connect_tasks:
            t.cancel()

    async def run_phase(
        self,
        index: int,
        spec: PhaseSpec,
        t0: float,
        worker: int = 0,
        workers: int = 1,
        on_tick: Callable[[Tick], None] | None = None,
    ) -> PhaseResult:
        """Run one phase from absolute monotonic time ``t0`` and return its totals."""
        r = self._r = PhaseResult(phase=index, spec=spec)
        self._tick = Tick(phase=index, index=0)
        self._drained = asyncio.Event()
        clock = self.clock
        pacer = Pacer(iter_schedule(spec, worker, workers), t0, clock)
        cpu0 = time.process_time()
        ticker = asyncio.ensure_future(self._ticker(index, t0, on_tick))
        reaper = asyncio.ensure_future(self._reaper())
        # Open enough connections for the largest burst before it is due (a share per worker).
        burst_share = -(-spec.max_simultaneous() // workers)
        self._ensure_capacity(min(max(8, burst_share), self.cfg.connections))
        try:
            delay = t0 - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            start = self._start
            while not self._stopping:
                for intended, tag in pacer.due(DISPATCH_BATCH):
                    start(intended, tag)
                wait = pacer.wait_s()
                if wait is None:
                    break
                await asyncio.sleep(min(wait, 0.05))
            r.schedule_s = max(0.0, clock() - t0)
            r.interrupted = self._stopping and not pacer.done
            grace = min(2.0, self.cfg.timeout_s) if self._stopping else self.cfg.timeout_s + 1.0
            if self.in_flight or self.backlog:
                self._drained.clear()
                try:
                    await asyncio.wait_for(self._drained.wait(), grace)
                except TimeoutError:
                    pass
        finally:
            ticker.cancel()
            reaper.cancel()
            if self.in_flight or self.backlog:
                for _, tag in self.backlog:
                    self._abandoned(tag)
                self.backlog.clear()
                for c in list(self.conns):
                    if c.busy:
                        self._abandoned(c.tag)
                        c.busy = False
                        if c.transport is not None:
                            c.transport.abort()
                self.in_flight = 0
        r.dispatch_late = pacer.late
        r.dispatch_max_lag_s = pacer.max_lag_s
        r.wall_s = max(1e-9, clock() - t0)
        r.cpu_s = time.process_time() - cpu0
        r.max_cpu_ratio = r.cpu_s / r.wall_s if r.wall_s > 0.2 else 0.0
        self._emit_tick(on_tick)
        return r

    # -- ticks and timeouts ------------------------------------------------------------------

    def _emit_tick(self, on_tick: Callable[[Tick], None] | None) -> None:
        t = self._tick
        self._tick = Tick(phase=t.phase, index=t.index + 1)
        r = self._r
        r.latency.merge(t.hist)
        r.main.merge(t.main)
        r.probe.merge(t.probe)
        if on_tick is not None:
            on_tick(t)

    async def _ticker(self, index: int, t0: float, on_tick: Callable[[Tick], None] | None) -> None:
        tick_s = self.cfg.tick_s
        k = 1
        while True:
            delay = t0 + k * tick_s - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            self._emit_tick(on_tick)
            k += 1

    async def _reaper(self) -> None:
        timeout = self.cfg.timeout_s
        period = min(0.25, timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = self.clock()
            for c in list(self.conns):
                if c.busy and now - c.sent_at > timeout:
                    c._fail("timeout")
            backlog = self.backlog
            while backlog and now - backlog[0][0] > timeout:
                _, tag = backlog.popleft()
                self._count_error(tag, "timeout")
            self._check_drained()

    # -- the hot path ------------------------------------------------------------------------

    def _start(self, intended: float, tag: int) -> None:
        if tag:
            self._tick.probe.sent += 1
            self._r.probes.setdefault(tag, [0, 0, 0, 0])[0] += 1
        else:
            self._tick.main.sent += 1
        if self.idle:
            self._send(self.idle.pop(), intended, tag)
            return
        self.backlog.append((intended, tag))
        if len(self.conns) + self.connecting >= self.cfg.connections:
            self._r.pool_exhausted += 1
        elif len(self.backlog) > self.connecting:
            self._open()

    def _send(self, conn: _Conn, intended: float, tag: int) -> None:
        now = self.clock()
        if tag == 0:
            reqs = self.main_reqs
            data = reqs[self.rr % len(reqs)]
            self.rr += 1
        else:
            data = self.probe_reqs[tag - 1]
        lag = now - intended
        r = self._r
        if lag > LATE_THRESHOLD_S:
            r.late += 1
            self._tick.late += 1
        if lag > r.max_lag_s:
            r.max_lag_s = lag
        r.bytes_sent += len(data)
        self.in_flight += 1
        conn.send(data, intended, tag, now)

    def _next_for(self, conn: _Conn) -> None:
        if self.backlog:
            intended, tag = self.backlog.popleft()
            self._send(conn, intended, tag)
        else:
            self.idle.append(conn)
            self._check_drained()

    def _response(self, conn: _Conn, status: int, nbytes: int) -> None:
        now = self.clock()
        self.in_flight -= 1
        r = self._r
        t = self._tick
        r.bytes_received += nbytes
        tag = conn.tag
        if tag:
            # Probe traffic is reported on its own: its latencies and 429s are not the service's.
            t.probe.answered(status)
            p = r.probes.setdefault(tag, [0, 0, 0, 0])
            p[1 if 200 <= status < 300 else 2 if status == 429 else 3] += 1
        else:
            t.hist.record(int((now - conn.intended) * 1e6))  # into the phase's histogram at every tick
            r.service.record(int((now - conn.sent_at) * 1e6))
            t.main.answered(status)
        if conn.close_after:
            conn.dead = True
            if conn.transport is not None:
                conn.transport.close()
            self._check_drained()
            return
        self._next_for(conn)

    def _count_error(self, tag: int, kind: str) -> None:
        if tag:
            self._tick.probe.failed(kind)
            self._r.probes.setdefault(tag, [0, 0, 0, 0])[3] += 1
        else:
            self._tick.main.failed(kind)

    def _abandoned(self, tag: int) -> None:
        if tag:
            self._tick.probe.abandoned += 1
            self._r.probes.setdefault(tag, [0, 0, 0, 0])[3] += 1
        else:
            self._tick.main.abandoned += 1

    def _request_failed(self, conn: _Conn, kind: str) -> None:
        self.in_flight -= 1
        self._count_error(conn.tag, kind)
        self._check_drained()

    # -- connections -------------------------------------------------------------------------

    def _ensure_capacity(self, n: int) -> None:
        while len(self.conns) + self.connecting < n:
            self._open()

    def _open(self) -> None:
        self.connecting += 1
        task = asyncio.ensure_future(self._connect())
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.create_connection(
                lambda: _Conn(self), self.cfg.host, self.cfg.port, ssl=self._ssl,
                server_hostname=self.cfg.server_hostname if self._ssl else None,
            )
        except OSError:
            self.connecting -= 1
            if self.backlog:
                _, tag = self.backlog.popleft()
                self._count_error(tag, "connect")
                self._check_drained()
            return
        except asyncio.CancelledError:
            self.connecting -= 1
            raise

    def _connected(self, conn: _Conn) -> None:
        self.connecting -= 1
        self.conns.add(conn)
        self._r.connections_opened += 1
        self._next_for(conn)
        if self.backlog and len(self.backlog) > self.connecting:
            if len(self.conns) + self.connecting < self.cfg.connections:
                self._open()

    def _lost(self, conn: _Conn, was_busy: bool) -> None:
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if was_busy:
            self._request_failed(conn, "connection_closed")
        if self.backlog and len(self.backlog) > self.connecting and not self._stopping:
            if len(self.conns) + self.connecting < self.cfg.connections:
                self._open()
        self._check_drained()

    def _check_drained(self) -> None:
        if self._drained is not None and not self.in_flight and not self.backlog:
            self._drained.set()
