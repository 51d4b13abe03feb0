"""Where user-service's time goes under the benchmark's load: cProfile and per-thread CPU.

Runs ``user-service serve`` (as shipped but with one worker, over a SQLite file
in a temporary folder) under :mod:`cProfile` behind a stand-in auth-service, drives it with
wrk as ``python -m bench`` does, and prints the functions that took the most
time, and the CPU time of each of the process's threads.

cProfile sees only the thread that serves requests (the event loop); the
per-thread CPU shows what the other threads (SQLite's writer, FastAPI's
thread pool) add. cProfile slows Python code down, so the throughput printed
here is lower than the benchmark's; the shares are what to read. A sampling
profiler (py-spy) would not slow it down, but is not installed.

Run it as ``python -m bench.profile_user_service [--latency-ms 10] [--seconds 8]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from bench.load import Load, drive, wrk_path
from bench.processes import Command, clean_environment, free_port, running
from bench.scenarios import stand_in_command

if TYPE_CHECKING:
    from types import FrameType

_CHILD = "--profiled-child"


def _serve_profiled(output: str, arguments: list[str]) -> None:
    """Serve user-service under cProfile; write the profile on SIGTERM."""
    from user_service.__main__ import main as user_service_main  # noqa: PLC0415 (profiled)

    profiler = cProfile.Profile()

    def dump(_signal: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(output)
        os._exit(0)

    # uvicorn shuts down on SIGTERM, then restores this handler and raises SIGTERM again.
    signal.signal(signal.SIGTERM, dump)
    profiler.enable()
    user_service_main(arguments)


def _thread_cpu(pid: int) -> dict[int, float]:
    """Return the CPU time of each thread of process ``pid``, by thread id."""
    ticks = os.sysconf("SC_CLK_TCK")
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text(encoding="ascii").rpartition(")")[2].split()
        except OSError:
            continue
        times[int(task.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return times


def main(argv: list[str] | None = None) -> int:
    """Profile user-service under load and print where its time went.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The exit code.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [_CHILD]:
        _serve_profiled(argv[1], argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--latency-ms", type=int, default=10, help="auth latency (default: 10)")
    parser.add_argument("--seconds", type=int, default=8, help="length of the load (default: 8)")
    parser.add_argument("--connections", type=int, default=32, help="connections (default: 32)")
    parser.add_argument("--top", type=int, default=30, help="functions listed (default: 30)")
    arguments = parser.parse_args(argv)
    if wrk_path() is None:
        sys.stderr.write("wrk is not installed: `make bench` installs it\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as scratch:
        folder = Path(scratch)
        profile = folder / "user-service.prof"
        port = free_port()
        with running(stand_in_command(arguments.latency_ms, folder)) as (auth,):
            command = Command(
                "user-service",
                [
                    sys.executable,
                    "-m",
                    "bench.profile_user_service",
                    _CHILD,
                    str(profile),
                    "serve",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                ],
                port,
                folder / "user-service.log",
                env=clean_environment(
                    {
                        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
                        "USER_SERVICE_AUTH_URL": auth.base_url,
                        "USER_SERVICE_DATABASE_URL": f"sqlite:///{folder / 'accounts.db'}",
                    }
                ),
            )
            with running(command) as (service,):
                before = _thread_cpu(service.process.pid)
                measurement = drive(
                    service.base_url,
                    Load("create", arguments.connections, arguments.seconds, prefix="bprofilex"),
                    results=folder / "load.json",
                    watch=[service, auth],
                )
                after = _thread_cpu(service.process.pid)
                main_thread = service.process.pid
        report = io.StringIO()
        stats = pstats.Stats(str(profile), stream=report)
        stats.sort_stats("tottime").print_stats(arguments.top)
        stats.sort_stats("cumulative").print_stats(arguments.top * 2)
    out = sys.stdout
    out.write(
        f"{measurement.rate:,.0f} requests/s under cProfile, p99 {measurement.p99_ms:.1f} ms,"
        f" errors {measurement.errors}; service CPU"
        f" {measurement.service_cpu['user-service']:.2f} cores\n\n"
        "CPU seconds per thread over the load (the first is the event loop):\n"
    )
    used = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    for tid, seconds in sorted(used.items(), key=lambda item: (item[0] != main_thread, -item[1])):
        if seconds > 0 or tid == main_thread:
            per_request = seconds / measurement.good * 1000 if measurement.good else 0.0
            out.write(f"  thread {tid}: {seconds:.2f} s ({per_request:.3f} ms per request)\n")
    out.write("\n" + report.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
