"""Before and after: user-service at several commits, side by side in one run.

Each revision's ``src`` is exported with ``git archive`` (``worktree`` means the
files as they are now) and served as shipped by that revision, behind one
stand-in auth-service, over a fresh SQLite file. The revisions take turns in
each round, so they see the same machine; the table gives each one's median.

A revision with client tokens (``servicekit/client_tokens.py``) is a registered
client of the stand-in, and the load one of it, registered with that
revision's ``clients add`` (:mod:`bench.clients`). A revision older than them
neither sends nor asks for a token: if one is compared, the stand-in answers
any caller, and the table says so.

Run it as ``python -m bench.compare 1b19d3d HEAD [--rounds 3] [--seconds 8]``;
it prints a markdown table and writes it to ``--output`` if given. ``--smoke``
runs one round of a second, for the tests.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import HOST, STARTED, clean_environment, free_port

from bench.clients import LOAD, add_client, stand_in_token
from bench.commands import REPO_ROOT, stand_in_command
from bench.load import Load, Measurement, drive, wrk_path
from bench.services import Command, Service, running

WORKTREE = "worktree"
_SETTLED_SECONDS = 1.5
_START_TIMEOUT_SECONDS = 30.0


@dataclass
class Revision:
    """One revision and what it measured.

    Attributes:
        name: The revision as given (a commit, a branch, ``worktree``).
        commit: Its commit, abbreviated, or ``worktree``.
        source: The folder its packages are imported from.
        runs: Its measurements, one a round.
    """

    name: str
    commit: str
    source: Path
    runs: list[Measurement] = field(default_factory=list)

    @property
    def has_client_tokens(self) -> bool:
        """Whether its services answer registered clients only, and call as one."""
        return (self.source / "servicekit" / "client_tokens.py").is_file()

    def median(self, value: str) -> float:
        """Return the median over the rounds of a :class:`Measurement` attribute or ``rate``."""
        return float(statistics.median(getattr(run, value) for run in self.runs))


def main(argv: list[str] | None = None) -> int:
    """Measure the revisions and print the table.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        0, or 1 if any answer was wrong, or 2 if wrk is missing.
    """
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("revisions", nargs="+", help=f"commits to compare, or {WORKTREE!r}")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default: 3)")
    parser.add_argument("--seconds", type=int, default=8, help="seconds a run (default: 8)")
    parser.add_argument("--latency-ms", type=int, default=10, help="auth latency (default: 10)")
    parser.add_argument("--connections", type=int, default=32, help="connections (default: 32)")
    parser.add_argument("--output", type=Path, help="also write the table here")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="one round of a second, with the Python load generator if wrk is missing",
    )
    arguments = parser.parse_args(argv)
    arguments.generator = "wrk"
    if arguments.smoke:
        arguments.rounds, arguments.seconds = 1, 1
        arguments.generator = "wrk" if wrk_path() else "python"
    elif wrk_path() is None:
        sys.stderr.write("wrk is not installed: `make bench` installs it\n")
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as scratch:
        folder = Path(scratch)
        revisions = [
            _export(name, folder / f"rev{index}") for index, name in enumerate(arguments.revisions)
        ]
        auth_token = stand_in_token(folder / "user-service-for-auth-service")
        checked = all(revision.has_client_tokens for revision in revisions)
        stand_in = stand_in_command(
            arguments.latency_ms, folder, tokens=[auth_token] if checked else []
        )
        with running(stand_in) as (auth,):
            for round_number in range(arguments.rounds):
                for revision in revisions:
                    measurement = _measure(
                        revision, auth, auth_token, arguments, folder / f"r{round_number}"
                    )
                    revision.runs.append(measurement)
                    sys.stderr.write(
                        f"[compare] round {round_number + 1} {revision.name}:"
                        f" {measurement.rate:,.0f} requests/s\n"
                    )
    table = _table(revisions, arguments, tokens_checked=checked)
    sys.stdout.write(table)
    if arguments.output is not None:
        arguments.output.write_text(table, encoding="utf-8")
    return 1 if any(run.errors for revision in revisions for run in revision.runs) else 0


def _export(name: str, folder: Path) -> Revision:
    if name == WORKTREE:
        return Revision(name, WORKTREE, REPO_ROOT / "src")
    commit = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", name],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    folder.mkdir(parents=True)
    archive = folder / "src.tar"
    subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "-o", str(archive), commit, "src"],  # noqa: S607
        check=True,
    )
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    return Revision(name, commit, folder / "src")


def _measure(
    revision: Revision,
    auth: Service,
    auth_token: Path,
    arguments: argparse.Namespace,
    folder: Path,
) -> Measurement:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = folder / f"user-service-{revision.commit}.log"
    program = [sys.executable, "-m", "user_service"]
    environment = clean_environment(
        {
            "PYTHONPATH": str(revision.source),
            "USER_SERVICE_DATABASE_URL": f"sqlite:///{folder / f'{revision.commit}.db'}",
        }
    )
    load_token = None
    if revision.has_client_tokens:
        load_token = add_client(
            "user-service",
            LOAD,
            environment,
            folder / f"{LOAD}-for-{revision.commit}",
            command=program,
        )
        environment["USER_SERVICE_AUTH_TOKEN_FILE"] = str(auth_token)
    command = Command(
        f"user-service {revision.commit}",
        [*program, "serve", "--host", HOST, "--port", str(port)],
        port,
        log_path,
        env={**environment, "USER_SERVICE_AUTH_URL": auth.base_url},
    )
    with running(command) as (service,):
        _wait_until_started(service)
        return drive(
            service.base_url,
            Load(
                "create",
                arguments.connections,
                arguments.seconds,
                generator=arguments.generator,
                prefix=f"cmp{time.time_ns()}",
                token_file=load_token,
            ),
            results=folder / f"load-{revision.commit}.json",
            watch=[service],
        )


def _wait_until_started(service: Service) -> None:
    """Wait until the service's workers, however many its revision starts, have all started.

    Older revisions do not say how many they start: wait until no more start-up
    lines come for a while.
    """
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    seen, settled_at = -1, time.monotonic()
    while time.monotonic() < deadline:
        started = service.log_path.read_text(encoding="utf-8", errors="replace").count(STARTED)
        if started != seen:
            seen, settled_at = started, time.monotonic()
        elif started > 0 and time.monotonic() - settled_at > _SETTLED_SECONDS:
            return
        time.sleep(0.05)
    msg = f"{service.name} did not start within {_START_TIMEOUT_SECONDS} s"
    raise RuntimeError(msg)


def _label(revision: Revision) -> str:
    if revision.name in {revision.commit, WORKTREE}:
        return revision.commit
    return f"{revision.name} ({revision.commit})"


def _table(
    revisions: list[Revision], arguments: argparse.Namespace, *, tokens_checked: bool
) -> str:
    first = revisions[0].median("rate")
    heading = (
        f"`POST /accounts` on user-service as shipped by each revision, {arguments.connections}"
        f" connections, {arguments.latency_ms} ms of auth latency; median of"
        f" {arguments.rounds} interleaved round(s) of {arguments.seconds} s."
    )
    if not tokens_checked:
        older = ", ".join(
            _label(revision) for revision in revisions if not revision.has_client_tokens
        )
        heading += (
            f" {older} predate(s) client tokens: the stand-in auth-service checked none, and"
            " the load presented one only to the revisions that ask for it."
        )
    lines = [
        heading,
        "",
        "| revision | requests/s | vs first | p50 (ms) | p99 (ms) | errors | service CPU (cores) |",
        "|---|---|---|---|---|---|---|",
    ]
    for revision in revisions:
        rate = revision.median("rate")
        cpu = statistics.median(next(iter(run.service_cpu.values())) for run in revision.runs)
        errors = sum(run.errors for run in revision.runs)
        lines.append(
            f"| {_label(revision)} | {rate:,.0f} | {rate / first:.2f}x"
            f" | {revision.median('p50_ms'):.1f} | {revision.median('p99_ms'):.1f}"
            f" | {errors} | {cpu:.2f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
