"""What the benchmarks share: processes they start (services, baselines, sinks), the HTTP load
generator (`wrk` with a Lua POST script; `Poster`, plain asyncio streams, for open-loop runs and
as the fallback when wrk is missing), CPU
accounting from /proc, and the SVG plots written next to docs/benchmarks.md."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PLOTS = ROOT / "docs" / "bench"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def server_url() -> str:
    """The benchmarks' PostgreSQL server (each benchmark creates its own fresh database on it)."""
    return os.environ.get("CLINIC_BENCH_DATABASE_URL") or DEFAULT_SERVER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stat(pid: int | str) -> tuple[str, list[str]]:
    """A process's name and the fields after it, from /proc/<pid>/stat."""
    name, rest = Path(f"/proc/{pid}/stat").read_text().split("(", 1)[1].rsplit(")", 1)
    return name, rest.split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (from /proc/<pid>/stat)."""
    fields = _stat(pid)[1]
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def postgres_cpu_seconds() -> float | None:
    """User + system CPU of the PostgreSQL servers on this machine so far: every `postgres`
    process, with what its exited children used (a backend's CPU goes to the postmaster when it
    exits). None when no server process is visible (the server runs elsewhere)."""
    total, seen = 0, False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name, fields = _stat(entry.name)
        except (OSError, ValueError):  # gone meanwhile
            continue
        if name == "postgres":
            seen = True
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK if seen else None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()
    return f"{os.cpu_count()} cores ({cpu}), load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


# -- processes -----------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> float:
        return rss_mb(self.pid)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(
                f"{url}: the process exited ({proc.returncode}); its log:\n{log.read_text()[-3000:]}"
            )
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s; log:\n{log.read_text()[-3000:]}")


@contextmanager
def process(
    name: str, argv: Sequence[str], env: dict[str, str], health_url: str, base_url: str
) -> Iterator[Proc]:
    """Start a server process, wait until `health_url` answers; SIGTERM (then SIGKILL) at exit."""
    log = Path(tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")[1])
    with log.open("wb") as out:
        popen = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    try:
        _wait_http(health_url, popen, log)
        yield Proc(name, popen, base_url, log)
    finally:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        log.unlink(missing_ok=True)


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    return {
        "CLINIC_DATABASE_URL": database_url,
        "CLINIC_LOG_LEVEL": "warning",
        "CLINIC_LOG_FORMAT": "json",
        **extra,
    }


@contextmanager
def clinic_service(service: str, database_url: str, *, workers: bool = False, **env: str) -> Iterator[Proc]:
    """`clinic serve <service>` as its own process on a free port."""
    port = free_port()
    argv = [sys.executable, "-c", "import sys; from services.cli import main; sys.exit(main())"]
    argv += ["serve", service, "--port", str(port)]
    if workers:
        argv.append("--with-workers")
    base = f"http://127.0.0.1:{port}"
    with process(service, argv, service_env(database_url, **env), f"{base}/health/live", base) as proc:
        yield proc


@contextmanager
def uvicorn_app(name: str, target: str, env: dict[str, str]) -> Iterator[Proc]:
    """A baseline ASGI app (`module:attr`) under one uvicorn process, as the services run."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    base = f"http://127.0.0.1:{port}"
    with process(name, argv, env, f"{base}/health", base) as proc:
        yield proc


# -- load ----------------------------------------------------------------------------------------


@dataclass
class Load:
    """One load run's result."""

    connections: int
    seconds: float
    requests: int
    errors: int
    p50_ms: float
    p99_ms: float
    generator_cpu_s: float
    server_cpu_s: float = 0.0
    generator: str = "wrk"
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def server_cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / self.requests if self.requests else 0.0

    def line(self) -> str:
        return (
            f"{self.rps:8,.0f} req/s  p50 {self.p50_ms:6.1f} ms  p99 {self.p99_ms:7.1f} ms  "
            f"errors {self.errors}  server CPU {self.server_cpu_ms_per_request:.2f} ms/req  "
            f"{self.generator} CPU {self.generator_cpu_s:.2f} s"
        )


_LUA = """
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
%(auth)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\": %%d, \\"duration_us\\": %%d, \\"p50_us\\": %%d, \\"p99_us\\": %%d, "
    .. "\\"errors\\": %%d}\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


_warned = False


def post_load(
    url: str, body: bytes, key: str | None, connections: int, seconds: float, proc: Proc | None
) -> Load:
    """POST `body` to `url` from `connections` connections for `seconds`; wrk when installed."""
    global _warned
    cpu0 = proc.cpu() if proc else 0.0
    if have_wrk():
        result = _wrk(url, body, key, connections, seconds)
    else:
        if not _warned:
            print(
                "wrk is not installed (apt-get install -y wrk): using the slower asyncio generator",
                flush=True,
            )
            _warned = True
        result = asyncio.run(_asyncio_load(url, body, key, connections, seconds))
    if proc:
        result.server_cpu_s = proc.cpu() - cpu0
    return result


def _wrk(url: str, body: bytes, key: str | None, connections: int, seconds: float) -> Load:
    auth = f'wrk.headers["Authorization"] = "Bearer {key}"' if key else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA % {"body": body.decode(), "auth": auth})
    try:
        threads = max(1, min(2, connections))
        popen = subprocess.Popen(
            [
                "wrk",
                "-t",
                str(threads),
                "-c",
                str(connections),
                "-d",
                f"{seconds:.0f}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert popen.stdout is not None
        output = popen.stdout.read().decode()
        _, status, usage = os.wait4(popen.pid, 0)
        popen.returncode = os.waitstatus_to_exitcode(status)
    finally:
        os.unlink(script.name)
    line = next((x for x in output.splitlines() if x.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk gave no summary:\n{output}")
    data = json.loads(line[len("WRKJSON ") :])
    return Load(
        connections=connections,
        seconds=data["duration_us"] / 1e6,
        requests=data["requests"],
        errors=data["errors"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        generator_cpu_s=usage.ru_utime + usage.ru_stime,
    )


class Poster:
    """POSTs one body over keep-alive HTTP/1.1 connections on plain asyncio streams, opening a
    connection whenever all are busy: a load generator light enough not to take the services'
    CPU on a two-core machine (httpx spent about 2.6 ms of CPU per POST, which at 100 intakes/s
    is a quarter of a core)."""

    def __init__(self, url: str, body: bytes, key: str | None) -> None:
        target = httpx.URL(url)
        self.host, self.port = target.host, target.port or 80
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        self.request = (
            f"POST {target.raw_path.decode()} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{auth}\r\n"
        ).encode() + body
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self) -> tuple[int, bytes]:
        """One POST: the status code and the body (an answer without Content-Length raises)."""
        reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
        writer.write(self.request)
        status = int((await reader.readline()).split()[1])
        length: int | None = None
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            writer.close()
            raise ValueError("an answer without Content-Length")
        answer = await reader.readexactly(length)
        self.idle.append((reader, writer))
        return status, answer

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _asyncio_load(url: str, body: bytes, key: str | None, connections: int, seconds: float) -> Load:
    poster = Poster(url, body, key)
    latencies: list[float] = []
    errors = 0
    cpu0 = time.process_time()
    deadline = time.perf_counter() + seconds

    async def one() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                ok = (await poster.post())[0] < 400
            except (OSError, ValueError, asyncio.IncompleteReadError):
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    poster.close()
    return Load(
        connections=connections,
        seconds=elapsed,
        requests=len(latencies),
        errors=errors,
        p50_ms=1000 * percentile(latencies, 50),
        p99_ms=1000 * percentile(latencies, 99),
        generator_cpu_s=time.process_time() - cpu0,
        generator="asyncio",
    )


def percentile(values: Sequence[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# -- plots ---------------------------------------------------------------------------------------


@dataclass
class Series:
    label: str
    points: list[tuple[float, float]]


_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def svg_plot(
    path: Path, title: str, x_label: str, y_label: str, series: Sequence[Series], *, log_x: bool = False
) -> Path:
    """A small line plot as SVG (no plotting library needed)."""
    import math

    width, height, left, right, top, bottom = 640, 360, 70, 170, 40, 50
    xs = [x for s in series for x, _ in s.points] or [0.0, 1.0]
    ys = [y for s in series for _, y in s.points] or [0.0, 1.0]

    def fx(x: float) -> float:
        return math.log2(max(x, 1e-9)) if log_x else x

    x0, x1 = min(fx(x) for x in xs), max(fx(x) for x in xs)
    if x1 == x0:
        x1 = x0 + 1
    y1 = max(ys) * 1.1 or 1.0

    def px(x: float) -> float:
        return left + (fx(x) - x0) / (x1 - x0) * (width - left - right)

    def py(y: float) -> float:
        return height - bottom - y / y1 * (height - top - bottom)

    mid = (top + height - bottom) / 2
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2 - 60}" y="22" font-size="14">{title}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" '
        f'y2="{height - bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
        f'<text x="{(left + width - right) / 2 - 40}" y="{height - 12}">{x_label}</text>',
        f'<text x="14" y="{mid}" transform="rotate(-90 14 {mid})">{y_label}</text>',
    ]
    for i in range(5):
        y = y1 * i / 4
        out.append(f'<text x="{left - 6}" y="{py(y) + 4}" text-anchor="end">{y:,.0f}</text>')
        out.append(f'<line x1="{left}" y1="{py(y)}" x2="{width - right}" y2="{py(y)}" stroke="#ddd"/>')
    for x in sorted(set(xs)):
        out.append(f'<text x="{px(x)}" y="{height - bottom + 16}" text-anchor="middle">{x:g}</text>')
    for n, s in enumerate(series):
        colour = _COLOURS[n % len(_COLOURS)]
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in s.points)
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{pts}"/>')
        for x, y in s.points:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>')
        out.append(
            f'<rect x="{width - right + 12}" y="{top + 18 * n}" width="12" height="3" fill="{colour}"/>'
        )
        out.append(f'<text x="{width - right + 28}" y="{top + 18 * n + 5}">{s.label}</text>')
    out.append("</svg>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out) + "\n")
    return path
