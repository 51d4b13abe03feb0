"""The results: a markdown table with each goal met or missed, the charts, and the raw JSON."""

from __future__ import annotations

import importlib.util
import platform
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench import real_report
from bench.goals import Goal
from bench.growth import GROWTH_LATENCY_MS
from bench.overhead import AUTH_LATENCIES_MS, NO_HOP_LIMIT, SEED_DESIGN, USER_SERVICE, Variant
from bench.real_path import FORM_PATH
from bench.services import CORES

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.axes import Axes

    from bench.auth_throughput import AuthResults
    from bench.contract_suite import ContractResults
    from bench.growth import GrowthResults
    from bench.overhead import DesignResults
    from bench.real_path import RealPathResults
    from bench.runs import RunConfig, Series
    from bench.spike import SpikeResults

__all__ = ["Goal", "Results", "can_chart", "chart", "goals", "markdown", "overload_chart"]

HASH_RATE_GOAL = 0.90
GROWTH_TOLERANCE = 0.10
MIB = 1024 * 1024
OTHER_CPU_WARNING = 0.25
WHOLE_LABELS = 100  # bar labels from here on need no decimals


@dataclass
class Results:
    """Everything one run measured.

    Attributes:
        config: How it ran.
        started: When it started, for the report.
        seconds: How long the whole run took.
        load_generator: The load generator, as the report names it.
        commit: The commit measured, with a mark if the work tree had changes.
        real_path: Sign-ups/s on the real path against the raw argon2id rate, if it ran
            and did not crash.
        spike: The open-loop spike, likewise.
        designs: user-service's own overhead behind a stand-in auth-service, likewise.
        auth: auth-service alone against the raw argon2id rate, likewise.
        contracts: The contract suite's wall time, likewise.
        growth: Cost as stored accounts grow, likewise.
        crashed: Per scenario that crashed, its traceback.
    """

    config: RunConfig
    started: str
    seconds: float
    load_generator: str
    commit: str
    real_path: RealPathResults | None = None
    spike: SpikeResults | None = None
    designs: DesignResults | None = None
    auth: AuthResults | None = None
    contracts: ContractResults | None = None
    growth: GrowthResults | None = None
    crashed: dict[str, str] = field(default_factory=dict)


def goals(results: Results) -> list[Goal]:
    """Return the goals, each with what this run measured."""
    return [
        *real_report.real_path_goals(results.real_path, results.config.connections),
        *real_report.spike_goals(results.spike),
        _durability_goal(results.designs),
        _auth_goal(results.auth),
        *_growth_goals(results.growth, results.config.sizes),
    ]


def _durability_goal(designs: DesignResults | None) -> Goal:
    name = "user-service: every account answered 201 is on disk (stand-in runs, 0 and 10 ms)"
    target = "all"
    if designs is None:
        return Goal(name, target, "n/a", None)
    stored = sum(designs.stored.values())
    acknowledged = sum(designs.acknowledged.values())
    durable = all(
        designs.stored[latency] >= designs.acknowledged[latency] for latency in AUTH_LATENCIES_MS
    )
    return Goal(name, target, f"{stored:,} accounts on disk for {acknowledged:,} 201s", durable)


def _auth_goal(auth: AuthResults | None) -> Goal:
    name = "auth-service validations/s over the raw argon2id rate (same cores)"
    target = f">= {HASH_RATE_GOAL:.0%}"
    ratio = _percent(auth.row("ratio")) if auth is not None else None
    if auth is None or ratio is None:
        return Goal(name, target, "n/a", None)
    measured = (
        f"{ratio:.1%} ({auth.row('validations/s')} vs {auth.row('raw verifies/s')} per second)"
    )
    return Goal(name, target, measured, ratio >= HASH_RATE_GOAL and auth.exit_code == 0)


def _percent(text: str | None) -> float | None:
    if text is None or not text.endswith("%"):
        return None
    try:
        return float(text.removesuffix("%")) / 100
    except ValueError:
        return None


def _growth_goals(growth: GrowthResults | None, sizes: tuple[int, ...]) -> list[Goal]:
    smallest, largest = min(sizes), max(sizes)
    goals_ = []
    for kind, what in (("create", "POST /accounts"), ("get", "GET /accounts/{id}")):
        name = f"{what} requests/s at {_count(largest)} stored accounts vs {_count(smallest)}"
        target = f"within {GROWTH_TOLERANCE:.0%}"
        if growth is None:
            goals_.append(Goal(name, target, "n/a", None))
            continue
        series = growth.create if kind == "create" else growth.get
        small, large = series[smallest], series[largest]
        change = large.rate / small.rate - 1 if small.rate else -1.0
        goals_.append(
            Goal(
                name,
                target,
                f"{change:+.1%} ({large.rate:,.0f} vs {small.rate:,.0f} requests/s)",
                change >= -GROWTH_TOLERANCE and small.errors == large.errors == 0,
            )
        )
    return goals_


def _count(number: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if number >= size and number % size == 0:
            return f"{number // size}{unit}"
    return f"{number:,}"


def markdown(
    results: Results, chart_name: str | None, overload_chart_name: str | None = None
) -> str:
    """Return the report: how the run was made, the goals, then each scenario's table.

    Args:
        results: What the run measured.
        chart_name: The chart's file name, beside the report; ``None`` if there is none.
        overload_chart_name: The spike's chart's file name; ``None`` if there is none.

    Returns:
        The report, in markdown.
    """
    config = results.config
    minutes, seconds = divmod(round(results.seconds), 60)
    lines = [
        "# Benchmarks" + (" (smoke run: numbers are not measurements)" if config.smoke else ""),
        "",
        (
            f"`python -m bench` (`make bench`), {results.started}, commit {results.commit}:"
            f" {CORES} cores ({_cpu_model()}), Python {platform.python_version()}."
            f" Whole run: {minutes} min {seconds:02d} s."
        ),
        "",
        (
            f"The real path: {config.rounds} round(s) of {config.seconds} s per path, the raw"
            f" argon2id rate measured in each round; the spike: {config.spike_seconds:g} s per"
            f" rate. Behind the stand-in auth-service: {config.stand_in_rounds} round(s) of"
            f" {config.seconds} s per variant, interleaved in each round. Tables give the median"
            " of the rounds (errors: all rounds added up; peak RSS: the service's peak). Load:"
            f" {results.load_generator}, {config.connections} connections, every answer checked"
            " (status and body), unless a section says otherwise; the load generator and the"
            " services share the machine's cores."
        ),
        "",
        (
            f"![throughput and p99 per design]({chart_name})"
            if chart_name
            else "No chart: matplotlib is not installed (`make bench` installs it)."
        ),
        "",
    ]
    if results.crashed:
        lines += ["## Crashed", ""]
        for scenario, trace in results.crashed.items():
            lines += [f"**{scenario}**", "", "```text", trace.strip(), "```", ""]
    lines += ["## Goals", "", "| goal | target | measured | |", "|---|---|---|---|"]
    lines += [f"| {g.name} | {g.target} | {g.measured} | {g.verdict} |" for g in goals(results)]
    lines += [""]
    lines += real_report.real_path_section(results.real_path, 1)
    lines += real_report.spike_section(results.spike, 2, overload_chart_name)
    lines += _designs_section(results.designs)
    lines += _auth_section(results.auth)
    lines += _contracts_section(results.contracts)
    lines += _growth_section(results.growth)
    lines += _generator_section(results)
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:  # noqa: PTH123
            for line in info:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _series_cells(series: Series, *, service: str) -> str:
    return (
        f"{series.rate:,.0f} | {series.p50_ms:.1f} | {series.p99_ms:.1f} | {series.errors}"
        f" | {series.peak_rss_bytes / MIB:.0f} | {series.service_cpu(service):.2f}"
        f" | {_ms(series.cpu_ms_per_request(service), unit='')} | {series.generator_cpu:.1%}"
    )


def _designs_section(designs: DesignResults | None) -> list[str]:
    lines = [
        "## 3. user-service's own overhead, behind a stand-in auth-service",
        "",
    ]
    if designs is None:
        return [*lines, "Not measured.", ""]
    lines += [
        (
            "auth-service here is a stand-in (`bench/stand_in_auth.py`) answering valid after a"
            " fixed latency, with no hashing: what is left is the cost of user-service itself."
            " No real sign-up sees this path (each costs an argon2id check, section 1); it shows"
            " how far user-service's own ceiling is above the real path's, and its CPU per"
            " request against the no-hop limit's."
        ),
        "",
        (
            "- **user-service**: `user-service serve` as shipped"
            f" ({_workers(designs.user_service_workers)}, its default; durable SQLite store, WAL,"
            " `synchronous=FULL`, in a temporary folder; JSON logs to a file; metrics;"
            " request ids). The seed's design and the limit are one process each, as they"
            " must be: their accounts live in a dict of their process."
        ),
        (
            "- **seed design** (`bench/seed_design.py`): the documented FastAPI endpoint calling"
            f" auth-service with a synchronous `{designs.sync_client}` session inside"
            " `async def`; accounts in a module-level dict."
        ),
        (
            "- **no-hop limit**: the same endpoint with an in-process verifier that always says"
            " yes; a dict store."
        ),
        "",
        (
            "| design | requests/s | p50 (ms) | p99 (ms) | errors | peak RSS (MiB)"
            " | service CPU (cores) | service CPU per request (ms) | load generator CPU (of all"
            " cores) | stand-in CPU (cores) | other CPU (cores) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, series in designs.series.items():
        stand_in = (
            f"{series.service_cpu(_stand_in_name(variant.latency_ms)):.2f}"
            if variant.latency_ms is not None
            else "-"
        )
        service = _service_name(variant)
        lines.append(
            f"| {series.label} | {_series_cells(series, service=service)} | {stand_in}"
            f" | {series.other_cpu:.2f} |"
        )
    latency = max(AUTH_LATENCIES_MS)
    ours = designs.series.get(Variant(USER_SERVICE, latency))
    limit = designs.series.get(Variant(NO_HOP_LIMIT, None))
    if ours is not None and limit is not None:
        ours_ms = ours.cpu_ms_per_request(_service_name(Variant(USER_SERVICE, latency)))
        limit_ms = limit.cpu_ms_per_request(_service_name(Variant(NO_HOP_LIMIT, None)))
        lines += [
            "",
            (
                f"user-service's CPU per request at {latency} ms: {_ms(ours_ms)} (all its"
                f" workers), against {_ms(limit_ms)} for the no-hop limit (one process, a dict,"
                " no call, no logs, no metrics, nothing durable). Compare both with the CPU of"
                " one argon2id check, in section 1."
            ),
        ]
    for latency in AUTH_LATENCIES_MS:
        lines.append("")
        lines.append(
            f"Durability @ {latency} ms: user-service acknowledged"
            f" {designs.acknowledged[latency]:,} accounts (201) and its database holds"
            f" {designs.stored[latency]:,} once stopped (requests cut off by the end of a"
            " run may be stored without their 201 having been read)."
        )
    examples = [f"- {s.label}: `{s.example}`" for s in designs.series.values() if s.example]
    if examples:
        lines += ["", "First failed answer per variant:", "", *examples]
    return [*lines, ""]


def _workers(count: int) -> str:
    return "one process" if count == 1 else f"{count} worker processes"


def _ms(value: float | None, unit: str = " ms") -> str:
    return "n/a" if value is None else f"{value:.2f}{unit}"


def _stand_in_name(latency_ms: int | None) -> str:
    return f"stand-in auth-service ({latency_ms} ms)"


def _service_name(variant: Variant) -> str:
    if variant.design == USER_SERVICE:
        return f"user-service-{variant.latency_ms}ms"
    if variant.design == SEED_DESIGN:
        return f"seed-{variant.latency_ms}ms"
    return "limit"


def _auth_section(auth: AuthResults | None) -> list[str]:
    lines = ["## 4. auth-service alone against the raw argon2id rate", ""]
    if auth is None:
        return [*lines, "Not measured.", ""]
    lines += [
        (
            "From `bench/auth_throughput.py` (auth-service as a real process, its clients in the"
            " script's process; the raw rate is one thread per core verifying the same hash with"
            f" the same parameters, alternating with the load). It ran {auth.seconds:.0f} s and"
            f" exited with {auth.exit_code}."
        ),
        "",
        auth.table.strip() or "(no table printed)",
    ]
    if auth.errors:
        lines += ["", "Its standard error:", "", "```text", auth.errors[-2000:], "```"]
    return [*lines, ""]


def _contracts_section(contracts: ContractResults | None) -> list[str]:
    lines = ["## 5. The contract suite", ""]
    if contracts is None or not contracts.runs:
        return [*lines, "Not measured.", ""]
    last = contracts.runs[-1]
    lines += [
        (
            f"`pytest {' '.join(contracts.selection)} -q`, timed as a whole process,"
            f" {len(contracts.runs)} time(s); medians. Consumer and provider times are pytest's"
            " own (set-up included), so they add up to less than the wall time."
        ),
        "",
        (
            "| tests | failed | skipped | wall time (s) | consumer tests (s)"
            " | provider verifications (s) | pytest said |"
        ),
        "|---|---|---|---|---|---|---|",
        (
            f"| {last.tests} | {last.failed} | {last.skipped} | {contracts.median('seconds'):.1f}"
            f" | {contracts.median('consumer_seconds'):.1f}"
            f" | {contracts.median('provider_seconds'):.1f} | {last.summary} |"
        ),
    ]
    return [*lines, ""]


def _growth_section(growth: GrowthResults | None) -> list[str]:
    lines = ["## 6. Cost as work grows", ""]
    if growth is None:
        return [*lines, "Not measured."]
    seeding = ", ".join(f"{_count(size)} in {s:.1f} s" for size, s in growth.seed_seconds.items())
    lines += [
        (
            "user-service as shipped, started afresh for each measurement on a copy of a database"
            f" already holding that many accounts (stored with one `executemany`: {seeding}); the"
            f" stand-in auth-service answers after {GROWTH_LATENCY_MS} ms so that the store's cost"
            " shows. `GET` reads random stored accounts."
        ),
        "",
        (
            "| accounts stored | POST requests/s | POST p50 (ms) | POST p99 (ms) | GET requests/s"
            " | GET p50 (ms) | GET p99 (ms) | errors | peak RSS (MiB) | service CPU, POST / GET"
            " (cores) | load generator CPU (of all cores) | other CPU (cores) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for size, create in growth.create.items():
        get = growth.get[size]
        service = f"user-service-{size}"
        lines.append(
            f"| {size:,} | {create.rate:,.0f} | {create.p50_ms:.1f} | {create.p99_ms:.1f}"
            f" | {get.rate:,.0f} | {get.p50_ms:.1f} | {get.p99_ms:.1f}"
            f" | {create.errors + get.errors}"
            f" | {max(create.peak_rss_bytes, get.peak_rss_bytes) / MIB:.0f}"
            f" | {create.service_cpu(service):.2f} / {get.service_cpu(service):.2f}"
            f" | {max(create.generator_cpu, get.generator_cpu):.1%}"
            f" | {max(create.other_cpu, get.other_cpu):.2f} |"
        )
    examples = [
        f"- {s.label}: `{s.example}`"
        for s in [*growth.create.values(), *growth.get.values()]
        if s.example
    ]
    if examples:
        lines += ["", "First failed answer:", "", *examples]
    return [*lines, ""]


def _generator_section(results: Results) -> list[str]:
    real_path = results.real_path
    every_series = [
        # The form's browsers are Python (bench/form_load.py): their CPU is in section 1.
        *(
            series
            for path, series in (real_path.series.items() if real_path else [])
            if path != FORM_PATH
        ),
        *(results.designs.series.values() if results.designs else []),
        *(results.growth.create.values() if results.growth else []),
        *(results.growth.get.values() if results.growth else []),
    ]
    if not every_series:
        return []
    peak = max(series.generator_cpu for series in every_series)
    other = max(series.other_cpu for series in every_series)
    lines = [
        "## The load generator and the machine",
        "",
        (
            f"{results.load_generator}: at most {peak:.1%} of the machine's CPU in any measurement"
            f" ({peak * CORES:.0%} of one core), from its own user and system time over its wall"
            f" time and all {CORES} cores. The services' own CPU is in the tables above; *other"
            " CPU* is what the rest of the machine used meanwhile (from `/proc/stat`; it includes"
            " kernel threads, such as the file system's journal writing the service's fsyncs),"
            f" at most {other:.2f} cores in any measurement."
        ),
    ]
    if other > OTHER_CPU_WARNING:
        lines += [
            "",
            (
                f"**The machine was busy with other work** (up to {other:.2f} cores): rerun on"
                " an idle machine before trusting small differences."
            ),
        ]
    return [*lines, ""]


def overload_chart(results: Results, path: Path) -> bool:
    """Draw the spike's offered load against goodput into ``path``, if the spike ran.

    Returns:
        Whether the chart was drawn.
    """
    if results.spike is None or not results.spike.phases:
        return False
    real_report.overload_chart(results.spike, path, smoke=results.config.smoke)
    return True


def can_chart() -> bool:
    """Tell whether matplotlib is installed (``make bench`` installs it; ``make test`` does not)."""
    return importlib.util.find_spec("matplotlib") is not None


def chart(results: Results, path: Path) -> None:
    """Draw throughput and p99 per design (and per accounts stored) into ``path``.

    Args:
        results: What the run measured.
        path: The PNG file to write.
    """
    # Imported here so that the smoke test runs where only the dev requirements are installed.
    import matplotlib as mpl  # noqa: PLC0415

    mpl.use("Agg")  # no display: the chart goes to a file
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(2, 2, figsize=(13, 9), layout="constrained")
    figure.suptitle(
        "user-service benchmarks" + (" (smoke run)" if results.config.smoke else ""), fontsize=14
    )
    if results.designs is not None:
        labels = [series.label.replace(" @ ", "\n@ ") for series in results.designs.series.values()]
        all_series = list(results.designs.series.values())
        _bars(axes[0][0], labels, [s.rate for s in all_series], "requests/s (log scale)")
        axes[0][0].set_title("POST /accounts behind a stand-in auth-service: throughput")
        _bars(axes[0][1], labels, [s.p99_ms for s in all_series], "p99 latency, ms (log scale)")
        axes[0][1].set_title("POST /accounts behind a stand-in auth-service: p99")
    if results.growth is not None:
        sizes = list(results.growth.create)
        for kind, series_by_size in (("POST", results.growth.create), ("GET", results.growth.get)):
            rates = [series_by_size[size].rate for size in sizes]
            p99s = [series_by_size[size].p99_ms for size in sizes]
            axes[1][0].plot(sizes, rates, marker="o", label=kind)
            axes[1][1].plot(sizes, p99s, marker="o", label=kind)
        for axis, unit, what in (
            (axes[1][0], "requests/s", "throughput"),
            (axes[1][1], "p99 latency, ms", "p99"),
        ):
            axis.set_xscale("log")
            axis.set_xlabel("accounts already stored (log scale)")
            axis.set_ylabel(unit)
            # From zero, with headroom: a flat curve must look flat, not fill the panel.
            axis.set_ylim(0, axis.get_ylim()[1] * 1.2)
            axis.set_title(f"user-service as accounts grow: {what}")
            axis.legend()
            axis.grid(visible=True, alpha=0.3)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _bars(axis: Axes, labels: list[str], values: list[float], unit: str) -> None:
    colours = [
        "tab:blue" if USER_SERVICE in label else "tab:grey" if SEED_DESIGN in label else "tab:green"
        for label in labels
    ]
    bars = axis.bar(range(len(values)), values, color=colours)
    axis.bar_label(
        bars,
        labels=[f"{value:,.0f}" if value >= WHOLE_LABELS else f"{value:.1f}" for value in values],
        fontsize=8,
    )
    axis.set_xticks(range(len(values)), labels, fontsize=8)
    axis.set_yscale("log")
    axis.set_ylabel(unit)
    axis.grid(axis="y", visible=True, alpha=0.3)
