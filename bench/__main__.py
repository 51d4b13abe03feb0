"""``python -m bench`` (``make bench``): run every benchmark and write the report.

It starts real processes on free ports, runs the load, stops everything and
writes ``latest.md`` (the tables, each goal met or missed) and ``latest.png``
(throughput and p99 per design) into the output folder, and the raw results
of the run into ``runs/<time>/`` beside them (ignored by git, removed by
``make clean``).

Scenarios:
    designs: ``POST /accounts`` on user-service, the seed's design and the no-hop limit.
    auth: auth-service validations/s against the raw argon2id rate (``bench/auth_throughput.py``).
    contracts: the wall time of the contract suite.
    growth: ``POST`` and ``GET /accounts`` with 10k, 100k and 1M accounts stored.

``--smoke`` runs each for about a second, to check that it all still works; without
wrk it then uses a small Python load generator instead, and says so.
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

from bench import report, scenarios
from bench.load import REPO_ROOT, wrk_path

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.load import Generator

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results"
SCENARIOS = ("designs", "auth", "contracts", "growth")
FULL_SIZES = (10_000, 100_000, 1_000_000)
SMOKE_SIZES = (100, 1_000, 10_000)
REPORT_NAME = "latest.md"
CHART_NAME = "latest.png"


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
    output: Path = arguments.output
    run_folder = output / "runs" / started.strftime("%Y%m%dT%H%M%SZ")
    run_folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        config = scenarios.RunConfig(
            seconds=1 if arguments.smoke else arguments.seconds,
            rounds=1 if arguments.smoke else arguments.rounds,
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
            "designs": lambda: setattr(results, "designs", scenarios.designs(config)),
            "auth": lambda: setattr(results, "auth", scenarios.auth_throughput(config)),
            "contracts": lambda: setattr(results, "contracts", scenarios.contract_suite(config)),
            "growth": lambda: setattr(results, "growth", scenarios.growth(config)),
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
    if charted:
        report.chart(results, output / CHART_NAME)
    text = report.markdown(results, CHART_NAME if charted else None)
    (output / REPORT_NAME).write_text(text, encoding="utf-8")
    (run_folder / "results.json").write_text(
        json.dumps(_plain(results), indent=2, default=str) + "\n", encoding="utf-8"
    )
    (run_folder / REPORT_NAME).write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    written = f"{output / REPORT_NAME}" + (f" and {output / CHART_NAME}" if charted else "")
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
        "--rounds", type=int, default=3, help="rounds; the median is reported (default: 3)"
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
        default=DEFAULT_OUTPUT,
        help="where latest.md, latest.png and runs/ go (default: bench/results)",
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
