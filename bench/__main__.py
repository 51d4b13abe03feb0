"""``python -m bench`` (``make bench``): run every benchmark and write the report.

It starts real processes on free ports, runs the load, stops everything and
writes ``latest.md`` (the tables, each goal met or missed), ``latest.png``
(throughput and p99 per design behind the stand-in) and ``overload.png`` (the
spike's offered load against goodput) into the output folder, and the raw results
of the run into ``runs/<time>/`` beside them (ignored by git, removed by
``make clean``). A run of some scenarios only, or a smoke run, leaves the
published ``bench/results/latest.*`` alone: its report and charts go into its
``runs/<time>/`` folder, unless ``--output`` names a folder.

Scenarios:
    real-path: sign-ups/s through user-service, through frontend-web's form and through
        the seed's design, each to the real auth-service, against the raw argon2id rate
        of the same cores measured in the same run (``bench/real_path.py``).
    spike: an open-loop spike at 1x, 2x, 4x and 10x capacity against user-service and the
        real auth-service: goodput, answers, latencies, memory, accounts (``bench/spike.py``).
    designs: user-service's own overhead behind a stand-in auth-service, beside the seed's
        design and the no-hop limit (``bench/overhead.py``).
    auth: auth-service validations/s against the raw argon2id rate (``bench/auth_throughput.py``).
    contracts: the wall time of the contract suite (``bench/contract_suite.py``).
    growth: ``POST`` and ``GET /accounts`` with 10k, 100k and 1M accounts stored
        (``bench/growth.py``).

``--smoke`` runs each for about a second (the spike at tiny rates), to check that it
all still works; without wrk it then uses a small Python load generator instead, and
says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import auth_throughput, contract_suite, growth, overhead, real_path, report, spike
from bench.commands import REPO_ROOT
from bench.load import wrk_path
from bench.runs import RunConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.load import Generator

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
SCENARIOS = ("real-path", "spike", "designs", "auth", "contracts", "growth")
FULL_SIZES = (10_000, 100_000, 1_000_000)
SMOKE_SIZES = (100, 1_000, 10_000)
REPORT_NAME = "latest.md"
CHART_NAME = "latest.png"
OVERLOAD_CHART_NAME = "overload.png"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and write the report.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        0 if every scenario ran to its end (whatever it measured), 1 if one crashed,
        2 if the benchmarks could not start.
    """
    arguments = _parser().parse_args(argv)
    generator, generator_name = _generator(arguments.load_generator, smoke=arguments.smoke)
    if generator is None:
        sys.stderr.write(f"{generator_name}\n")
        return 2
    started = datetime.now(UTC)
    output: Path = arguments.output or DEFAULT_OUTPUT
    run_folder = output / "runs" / started.strftime("%Y%m%dT%H%M%SZ")
    run_folder.mkdir(parents=True, exist_ok=True)
    partial = arguments.smoke or set(arguments.scenarios) != set(SCENARIOS)
    if arguments.output is None and partial:
        output = run_folder
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        config = RunConfig(
            seconds=1 if arguments.smoke else arguments.seconds,
            rounds=1 if arguments.smoke else arguments.rounds,
            stand_in_rounds=1 if arguments.smoke else arguments.stand_in_rounds,
            spike_seconds=1.0 if arguments.smoke else arguments.spike_seconds,
            connections=arguments.connections,
            generator=generator,
            wrk_threads=arguments.wrk_threads,
            sizes=tuple(arguments.sizes or (SMOKE_SIZES if arguments.smoke else FULL_SIZES)),
            smoke=arguments.smoke,
            warmup_seconds=0 if arguments.smoke else 1,
            run_folder=run_folder,
            scratch=Path(scratch),
        )
        results = report.Results(
            config=config,
            started=started.strftime("%Y-%m-%d %H:%M UTC"),
            seconds=0.0,
            load_generator=generator_name,
            commit=_commit(),
        )
        _say(f"benchmarks: {results.load_generator}; raw results in {run_folder}")
        clock = time.perf_counter()
        runners: dict[str, Callable[[], None]] = {
            "real-path": lambda: setattr(results, "real_path", real_path.real_path(config)),
            "spike": lambda: setattr(results, "spike", spike.spike(config)),
            "designs": lambda: setattr(results, "designs", overhead.designs(config)),
            "auth": lambda: setattr(results, "auth", auth_throughput.auth_throughput(config)),
            "contracts": lambda: setattr(
                results, "contracts", contract_suite.contract_suite(config)
            ),
            "growth": lambda: setattr(results, "growth", growth.growth(config)),
        }
        for name in arguments.scenarios:
            _say(f"scenario {name}...")
            scenario_clock = time.perf_counter()
            try:
                runners[name]()
            except Exception:  # noqa: BLE001 (reported in the table; the other scenarios go on)
                results.crashed[name] = traceback.format_exc()
                _say(f"scenario {name} crashed:\n{results.crashed[name]}")
            _say(f"scenario {name}: {time.perf_counter() - scenario_clock:.0f} s")
        results.seconds = time.perf_counter() - clock
    output.mkdir(parents=True, exist_ok=True)
    charted = report.can_chart()
    overload_charted = False
    if charted:
        report.chart(results, output / CHART_NAME)
        overload_charted = report.overload_chart(results, output / OVERLOAD_CHART_NAME)
    text = report.markdown(
        results,
        CHART_NAME if charted else None,
        OVERLOAD_CHART_NAME if overload_charted else None,
    )
    (output / REPORT_NAME).write_text(text, encoding="utf-8")
    (run_folder / "results.json").write_text(
        json.dumps(_plain(results), indent=2, default=str) + "\n", encoding="utf-8"
    )
    if output != run_folder:
        (run_folder / REPORT_NAME).write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    charts = [
        name
        for name, drawn in ((CHART_NAME, charted), (OVERLOAD_CHART_NAME, overload_charted))
        if drawn
    ]
    written = ", ".join(str(output / name) for name in [REPORT_NAME, *charts])
    _say(f"wrote {written} in {results.seconds:.0f} s")
    return 1 if results.crashed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.partition("\n\n")[0]
    )
    parser.add_argument(
        "--seconds", type=int, default=8, help="length of each measurement (default: %(default)s)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of the real path, auth and contracts; the median is reported (default: 3)",
    )
    parser.add_argument(
        "--stand-in-rounds",
        type=int,
        default=2,
        help="rounds of the scenarios behind the stand-in auth-service (default: 2)",
    )
    parser.add_argument(
        "--spike-seconds",
        type=float,
        default=10.0,
        help="length of each rate of the spike (default: %(default)s)",
    )
    parser.add_argument(
        "--connections", type=int, default=32, help="concurrent connections (default: 32)"
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default: 1)")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        help="accounts stored beforehand, for growth (default: 10000 100000 1000000)",
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=SCENARIOS,
        default=list(SCENARIOS),
        help="which to run (default: all)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=(
            "where latest.md, the charts and runs/ go (default: bench/results; the run's own"
            " runs/<time>/ folder for a smoke run or some scenarios only)"
        ),
    )
    parser.add_argument(
        "--load-generator",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="auto: wrk; in a smoke run the Python one if wrk is missing (default: auto)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="about a second of each scenario: check it all runs"
    )
    return parser


def _generator(choice: str, *, smoke: bool) -> tuple[Generator | None, str]:
    """Pick the load generator.

    Returns:
        The generator and how the report names it, or ``None`` and why there is none.
    """
    wrk = wrk_path()
    if choice == "python" or (choice == "auto" and wrk is None and smoke):
        if not smoke:
            return None, "the Python load generator is for smoke runs only (--smoke)"
        reason = "wrk is not installed, so" if wrk is None else "chosen with --load-generator;"
        return "python", (
            f"the built-in Python load generator (`bench/pyload.py`; {reason} this smoke run's"
            " numbers say nothing about the services)"
        )
    if wrk is None:
        return None, "wrk is not installed: `make bench` installs it (apt-get install wrk)"
    version = subprocess.run(
        [wrk, "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    return "wrk", f"wrk {version[1] if len(version) > 1 else ''}".strip()


def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args],  # noqa: S607 (git from PATH, as a developer runs it)
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("diff", "HEAD", "--name-only", "--", "src").split()
    if not changed:
        return commit
    # Which uncommitted state of the code was measured: two runs with the same digest ran the same.
    digest = hashlib.sha256(git("diff", "HEAD", "--", "src").encode()).hexdigest()[:10]
    return f"{commit} with uncommitted changes to {len(changed)} file(s) in src/ (diff {digest})"


def _plain(value: object) -> Any:  # noqa: ANN401 (JSON of any shape)
    """Return ``value`` as JSON data: dataclasses and dicts with non-string keys included."""
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    if is_dataclass(value) and not isinstance(value, type):
        return {item.name: _plain(getattr(value, item.name)) for item in fields(value)}
    if isinstance(value, dict):
        return {_key(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _key(key: object) -> str:
    label = getattr(key, "label", None)
    return str(label) if label is not None else str(key)


def _say(message: str) -> None:
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


if __name__ == "__main__":
    raise SystemExit(main())
