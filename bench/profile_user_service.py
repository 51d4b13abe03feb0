"""Where user-service's time goes under the benchmark's load, sampled by py-spy.

Runs ``user-service serve`` as shipped (one worker per core, over a SQLite file
in a temporary folder) behind a stand-in auth-service, drives it with wrk as
``python -m bench`` does, and samples every worker with py-spy meanwhile. py-spy
reads the processes from outside, so it barely slows them (cProfile, which
this used before, slowed Python code several times over and so skewed the
shares). It prints where the samples of the workers' event loops fell, by
package, by function (own samples) and by function with what it calls; and
how the samples split between the event loops and the other threads (SQLite's
writer). Samples are taken only while a thread runs, not while it waits.

Run it as ``python -m bench.profile_user_service [--latency-ms 10] [--seconds 8]
[--workers N] [--top 30] [--smoke]``; it needs py-spy (``make bench`` installs it) and the
right to trace the workers (root, or ``kernel.yama.ptrace_scope`` 0).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from tests.support.processes import clean_environment

from bench.clients import LOAD, add_client, stand_in_token
from bench.commands import stand_in_command, user_environment, user_service_command
from bench.load import Load, drive, wrk_path
from bench.services import CORES, running

if TYPE_CHECKING:
    from bench.load import Generator

_EVENT_LOOP = "MainThread"
_MODULE = re.compile(r"\((?:<frozen )?([A-Za-z0-9_]+)")
# The process's command line, which may hold ";" itself (multiprocessing's does).
_PROCESS = re.compile(r'^process \d+:".*?";(?=thread \()')
_THREAD = re.compile(r"thread \(\d+\): (\S+?)(?:_\d+)?$")


class Profile:
    """Samples of stacks, as py-spy's raw format gives them.

    Attributes:
        threads: Samples by thread name (threads of the same name in every worker added up).
        packages: Event-loop samples by the package of the function running.
        own: Event-loop samples by the function running.
        under: Event-loop samples by every function on the stack.
        loop_samples: All event-loop samples.
    """

    def __init__(self) -> None:
        """Start empty."""
        self.threads: Counter[str] = Counter()
        self.packages: Counter[str] = Counter()
        self.own: Counter[str] = Counter()
        self.under: Counter[str] = Counter()
        self.loop_samples = 0

    def add(self, line: str) -> None:
        """Count one line of py-spy's raw output: ``[process;]thread;frame;...;frame N``."""
        stack, _, count = line.rstrip().rpartition(" ")
        frames = _PROCESS.sub("", stack).split(";")
        if len(frames) < 2 or not count.isdigit():  # noqa: PLR2004 (a thread and a frame)
            return
        samples = int(count)
        thread = _THREAD.match(frames[0])
        name = thread.group(1) if thread else frames[0]
        self.threads[name] += samples
        if name != _EVENT_LOOP:
            return
        self.loop_samples += samples
        module = _MODULE.search(frames[-1])
        self.packages[module.group(1) if module else "?"] += samples
        self.own[frames[-1]] += samples
        for frame in set(frames[1:]):
            self.under[frame] += samples

    def report(self, top: int) -> str:
        """Return the tables, the ``top`` rows of each."""
        total = sum(self.threads.values()) or 1
        loop = self.loop_samples or 1
        lines = ["Samples by thread (all workers):"]
        lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in self.threads.most_common()]
        for title, counter in (
            ("event loops, by package of the running function", self.packages),
            ("event loops, by function (own samples)", self.own),
            ("event loops, by function (with what it calls)", self.under),
        ):
            lines += ["", f"Samples of the {title}:"]
            lines += [f"  {100 * n / loop:5.1f}%  {frame}" for frame, n in counter.most_common(top)]
        return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Profile user-service under load and print where its time went.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The exit code: 2 if wrk or py-spy is missing.
    """
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--latency-ms", type=int, default=10, help="auth latency (default: 10)")
    parser.add_argument("--seconds", type=int, default=8, help="length of the load (default: 8)")
    parser.add_argument("--connections", type=int, default=32, help="connections (default: 32)")
    parser.add_argument("--workers", type=int, default=CORES, help="workers (default: %(default)s)")
    parser.add_argument("--top", type=int, default=30, help="rows of each table (default: 30)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="two seconds, with the Python load generator if wrk is missing (for the tests)",
    )
    arguments = parser.parse_args(argv)
    generator: Generator = "wrk"
    if arguments.smoke:
        arguments.seconds = 2
        generator = "wrk" if wrk_path() else "python"
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if (generator == "wrk" and wrk_path() is None) or not Path(py_spy).exists():
        sys.stderr.write("wrk or py-spy is not installed: `make bench` installs them\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as scratch:
        folder = Path(scratch)
        samples = folder / "samples.txt"
        auth_token = stand_in_token(folder / "user-service-for-auth-service")
        load_token = add_client(
            "user-service",
            LOAD,
            user_environment(folder / "accounts.db"),
            folder / f"{LOAD}-for-user-service",
        )
        stand_in = stand_in_command(arguments.latency_ms, folder, tokens=[auth_token])
        with running(stand_in) as (auth,):
            shipped = user_service_command(
                auth.base_url,
                folder / "accounts.db",
                folder / "user-service.log",
                auth_token=auth_token,
            )
            command = replace(
                shipped,
                args=[*shipped.args, "--workers", str(arguments.workers)],
                workers=arguments.workers,
            )
            with running(command) as (service,):
                recorder = subprocess.Popen(
                    [
                        py_spy,
                        "record",
                        "--pid",
                        str(service.process.pid),
                        "--subprocesses",
                        "--threads",
                        "--nonblocking",
                        "--format",
                        "raw",
                        "--duration",
                        str(arguments.seconds),
                        "--output",
                        str(samples),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=(folder / "py-spy.log").open("wb"),
                    env=clean_environment(),
                )
                measurement = drive(
                    service.base_url,
                    Load(
                        "create",
                        arguments.connections,
                        arguments.seconds,
                        generator=generator,
                        prefix="bprofilex",
                        token_file=load_token,
                    ),
                    results=folder / "load.json",
                    watch=[service, auth],
                )
                if recorder.wait(timeout=arguments.seconds + 30) != 0 or not samples.exists():
                    log = (folder / "py-spy.log").read_text(encoding="utf-8", errors="replace")
                    sys.stderr.write(f"py-spy failed:\n{log}")
                    return 1
        profile = Profile()
        with samples.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                profile.add(line)
    sys.stdout.write(
        f"{measurement.rate:,.0f} requests/s while sampled, p99 {measurement.p99_ms:.1f} ms,"
        f" errors {measurement.errors}; user-service CPU"
        f" {measurement.service_cpu[service.name]:.2f} cores ({arguments.workers} workers)\n\n"
    )
    sys.stdout.write(profile.report(arguments.top))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
