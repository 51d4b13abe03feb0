"""The report's goals, sections and chart for the real path and the open-loop spike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.goals import Goal
from bench.real_path import AUTH, FORM_PATH, FRONTEND, SEED, SEED_PATH, USER, USER_SERVICE_PATH
from bench.services import CORES
from bench.spike import ADMITTED, MULTIPLES, SERVICES

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from matplotlib.axes import Axes

    from bench.real_path import RealPathResults
    from bench.spike import SpikePhase, SpikeResults

USER_SERVICE_SHARE_GOAL = 0.95
FORM_SHARE_GOAL = 0.90
GOODPUT_GOAL = 0.90
GOODPUT_MULTIPLES = (4, 10)
REJECTED_P99_GOAL_MS = 100.0
ADMITTED_P99_GOAL_MS = 3000.0
MEMORY_GROWTH_GOAL = 1.5
MIB = 1024 * 1024


def real_path_goals(results: RealPathResults | None, connections: int) -> list[Goal]:
    """Return the real path's goals: sign-ups/s over the raw argon2id rate, per path."""
    goals = []
    for path, share, how in (
        (USER_SERVICE_PATH, USER_SERVICE_SHARE_GOAL, f"wrk, {connections} connections"),
        (FORM_PATH, FORM_SHARE_GOAL, f"{connections} browsers"),
    ):
        name = f"sign-ups/s {path} over the raw argon2id rate of the same cores ({how})"
        target = f">= {share:.0%}"
        if results is None:
            goals.append(Goal(name, target, "n/a", None))
            continue
        series = results.series[path]
        ratio = results.ratio(path)
        measured = f"{ratio:.1%} ({series.rate:,.1f} vs {results.raw_rate:,.1f}/s)" + (
            f"; {series.errors} errors" if series.errors else ""
        )
        goals.append(Goal(name, target, measured, ratio >= share and series.errors == 0))
    return goals


def spike_goals(spike: SpikeResults | None) -> list[Goal]:
    """Return the spike's goals, each over every rate it applies to."""
    names_and_targets = [
        *(
            (
                f"goodput at {multiple}x capacity (open loop)",
                f">= {GOODPUT_GOAL:.0%} of capacity",
            )
            for multiple in GOODPUT_MULTIPLES
        ),
        (
            "every request of the spike answered 201, 409, 429 or 503 with Retry-After",
            "all (none given up)",
        ),
        (
            "p99 of rejections (every answer but 201/409), worst rate",
            f"<= {REJECTED_P99_GOAL_MS:g} ms",
        ),
        ("p99 of admitted sign-ups (201/409), worst rate", f"<= {ADMITTED_P99_GOAL_MS / 1000:g} s"),
        ("first sign-up after each rate, after a short drain", "201 every time"),
        (
            f"peak memory of each service at {MULTIPLES[-1]}x over {MULTIPLES[0]}x",
            f"<= {MEMORY_GROWTH_GOAL:g}x",
        ),
        (
            "nothing lost or doubled: user-service's accounts against the answers",
            "every 201 stored once; none for another answer",
        ),
    ]
    if spike is None or not spike.phases:
        return [Goal(name, target, "n/a", None) for name, target in names_and_targets]
    measured = [
        *(_goodput(spike, multiple) for multiple in GOODPUT_MULTIPLES),
        _answers(spike),
        _worst_p99(spike, rejected=True),
        _worst_p99(spike, rejected=False),
        _probes(spike),
        _memory(spike),
        _accounts(spike),
    ]
    return [
        Goal(name, target, text, met)
        for (name, target), (text, met) in zip(names_and_targets, measured, strict=True)
    ]


def _goodput(spike: SpikeResults, multiple: int) -> tuple[str, bool | None]:
    phase = spike.phase(multiple)
    if phase is None:
        return "n/a", None
    ideal = spike.ideal(phase.offered)
    share = phase.goodput / ideal if ideal else 0.0
    return (
        f"{share:.0%} ({phase.goodput:,.1f}/s of {ideal:,.1f}/s; {phase.offered:,.0f}/s offered)",
        share >= GOODPUT_GOAL,
    )


def _answers(spike: SpikeResults) -> tuple[str, bool]:
    total = sum(phase.requests for phase in spike.phases)
    wrong = sum(phase.unexpected for phase in spike.phases)
    others: dict[int, int] = {}
    for phase in spike.phases:
        for status, count in phase.statuses.items():
            if status not in ADMITTED | {429, 503}:
                others[status] = others.get(status, 0) + count
    parts = [f"{status}: {count:,}" for status, count in sorted(others.items())]
    missing = sum(phase.missing_retry_after for phase in spike.phases)
    gave_up = sum(phase.gave_up for phase in spike.phases)
    errors = sum(phase.connection_errors for phase in spike.phases)
    parts += [f"503 without Retry-After: {missing:,}"] if missing else []
    parts += [f"given up: {gave_up:,}"] if gave_up else []
    parts += [f"connection errors: {errors:,}"] if errors else []
    detail = f": {', '.join(parts)}" if parts else ""
    return f"{total - wrong:,} of {total:,} requests{detail}", wrong == 0


def _worst_p99(spike: SpikeResults, *, rejected: bool) -> tuple[str, bool]:
    goal = REJECTED_P99_GOAL_MS if rejected else ADMITTED_P99_GOAL_MS
    values = [
        (value, phase.multiple)
        for phase in spike.phases
        if (value := phase.rejected_p99_ms if rejected else phase.admitted_p99_ms) is not None
    ]
    if not values:
        return ("no rejections" if rejected else "nothing admitted"), rejected
    worst, multiple = max(values)
    return f"{_ms(worst)} at {multiple:g}x", worst <= goal


def _probes(spike: SpikeResults) -> tuple[str, bool]:
    parts = [
        f"{phase.multiple:g}x: "
        + (
            f"{phase.probe_status} in {_ms(phase.probe_ms)}"
            if phase.probe_status is not None
            else phase.probe_outcome
        )
        for phase in spike.phases
    ]
    return "; ".join(parts), all(phase.probe_served for phase in spike.phases)


def _memory(spike: SpikeResults) -> tuple[str, bool | None]:
    base, top = spike.phase(MULTIPLES[0]), spike.phase(MULTIPLES[-1])
    if base is None or top is None:
        return "n/a", None
    parts, met = [], True
    for name in SERVICES:
        low, high = base.peak_rss_bytes.get(name, 0), top.peak_rss_bytes.get(name, 0)
        growth = high / low if low else float("inf")
        met = met and growth <= MEMORY_GROWTH_GOAL
        parts.append(f"{name} {growth:.2f}x ({high / MIB:,.0f} vs {low / MIB:,.0f} MiB)")
    if not (base.peak_reset and top.peak_reset):
        parts.append("peaks since start: they could not be reset per rate")
    return "; ".join(parts), met


def _accounts(spike: SpikeResults) -> tuple[str, bool | None]:
    checked = [phase.accounts for phase in spike.phases if phase.accounts is not None]
    if len(checked) != len(spike.phases):
        return "n/a", None
    created = sum(accounts.created for accounts in checked)
    lost = sum(accounts.lost for accounts in checked)
    doubled = sum(accounts.doubled for accounts in checked)
    otherwise = sum(accounts.answered_otherwise for accounts in checked)
    unknown = sum(accounts.unknown for accounts in checked)
    given_up = sum(accounts.given_up for accounts in checked)
    text = (
        f"{created:,} answered 201: {lost:,} missing, {doubled:,} doubled; {otherwise:,}"
        f" accounts for requests answered otherwise, {unknown:,} for requests never sent"
        f" ({given_up:,} for requests given up)"
    )
    return text, all(accounts.consistent for accounts in checked)


def real_path_section(results: RealPathResults | None, number: int) -> list[str]:
    """Return the real path's section of the report."""
    lines = [f"## {number}. The real path: sign-ups/s against the raw argon2id rate", ""]
    if results is None:
        return [*lines, "Not measured.", ""]
    raw_cpu = results.raw_cpu_ms
    lines += [
        (
            f"Every sign-up costs one argon2id check ({results.parameters}) in auth-service, so"
            f" no path can pass the raw rate: {CORES} threads (one per core) verifying"
            " auth-service's own hash in a loop. Each round measures the raw rate, then each"
            " path, one at a time and nothing else loading the machine; the ratio is taken round"
            " by round, and the table gives the medians. The services are the shipped commands"
            f" with their default settings ({_processes(results.workers)}) over SQLite files in"
            " a temporary folder; auth-service holds"
            f" {results.seeded:,} users sharing one hash, seeded in {results.seed_seconds:.1f} s"
            " before it started, one for each username the load sends, so every answer expected"
            " is a 201 (a 401 or 409 counts as an error)."
        ),
        "",
        (
            f"- **{USER_SERVICE_PATH}**: wrk, {results.connections} connections,"
            " `POST /accounts` with a new username each."
        ),
        (
            f"- **{FORM_PATH}**: {results.connections} Python browsers (`bench/form_load.py`),"
            " each `GET /` (the CSRF cookie, token and idempotency key), then `POST /signup`;"
            " a sign-up is good when the page shows the account created. Latency: the POST."
        ),
        (
            f"- **{SEED_PATH}**: the seed's design (`bench/seed_design.py`, a synchronous"
            " call inside `async def`) in front of the same auth-service, as user-service's row."
        ),
        "",
        (
            "| path | sign-ups/s | of raw | p50 (ms) | p99 (ms) | errors | auth-service CPU"
            " (cores) | auth-service CPU per sign-up (ms) | user-service CPU (cores)"
            " | frontend-web CPU (cores) | seed design CPU (cores) | peak RSS (MiB)"
            " | load generator CPU (of all cores) | other CPU (cores) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        (
            f"| raw argon2id, {results.raw[0].threads} threads | {results.raw_rate:,.1f} | 100%"
            f" | - | - | - | - | {_number(raw_cpu)} (per verification) | - | - | - | - | - | - |"
        ),
    ]
    for path, series in results.series.items():
        auth, user, frontend, seed = (
            f"{series.service_cpu(name):.2f}" if _watched(path, name) else "-"
            for name in (AUTH, USER, FRONTEND, SEED)
        )
        lines.append(
            f"| {path} | {series.rate:,.1f} | {results.ratio(path):.1%} | {series.p50_ms:,.0f}"
            f" | {series.p99_ms:,.0f} | {series.errors} | {auth}"
            f" | {_number(series.cpu_ms_per_request(AUTH))} | {user} | {frontend} | {seed}"
            f" | {series.peak_rss_bytes / MIB:,.0f} | {series.generator_cpu:.1%}"
            f" | {series.other_cpu:.2f} |"
        )
    lines += [
        "",
        (
            "Peak RSS: the process tree of the path's first hop (user-service's workers,"
            " frontend-web, the seed's design). With 32 connections and one check at a time per"
            " core, a sign-up waits about 32 / rate seconds: the p50 is queueing, not work."
        ),
    ]
    examples = [f"- {s.label}: `{s.example}`" for s in results.series.values() if s.example]
    if examples:
        lines += ["", "First failed answer per path:", "", *examples]
    return [*lines, ""]


def _processes(workers: dict[str, int]) -> str:
    return ", ".join(
        f"`{name} serve`: {count} process{'es' if count > 1 else ''}"
        for name, count in workers.items()
        if name != SEED
    )


def _watched(path: str, name: str) -> bool:
    return (
        name == AUTH
        or {
            USER_SERVICE_PATH: name == USER,
            FORM_PATH: name in {USER, FRONTEND},
            SEED_PATH: name == SEED,
        }[path]
    )


def spike_section(spike: SpikeResults | None, number: int, chart_name: str | None) -> list[str]:
    """Return the spike's section of the report."""
    lines = [f"## {number}. Overload: an open-loop spike", ""]
    if spike is None:
        return [*lines, "Not measured.", ""]
    lines += [
        (
            f"Capacity: {spike.capacity:,.1f} sign-ups/s, the raw argon2id rate"
            f" ({spike.parameters}, {spike.raw.threads} threads) measured first in this"
            " scenario. Then user-service and the real auth-service, as shipped, take an"
            " open-loop load at each rate (`bench/open_loop.py`): request *i* sent at *i*/rate s"
            " whatever the answers, no cap on connections, each given up after"
            f" {spike.client_timeout:g} s; 1x first, as the baseline of memory. Goodput: 201 and"
            f" 409 answered per second within the window, after its first {spike.ramp:g} s (the"
            " queues fill). Latencies count from when each request was due. After each rate,"
            f" once every request has ended, a {spike.drain:g} s drain, then one more sign-up"
            " (the probe). Peak RSS: each service's process tree, restarted for each rate."
        ),
        "",
        (
            f"![offered load against goodput]({chart_name})"
            if chart_name
            else "No chart: matplotlib is not installed (`make bench` installs it)."
        ),
        "",
        (
            "| offered | requests | goodput/s | of capacity | answers | gave up"
            " | p50 / p99 admitted (ms) | p99 rejected (ms) | 503 without Retry-After | probe"
            " | user-service peak RSS (MiB) | auth-service peak RSS (MiB)"
            " | user-service / auth-service CPU (cores) | generator CPU (of all cores), p99 lag"
            " (ms) | accounts: missing / doubled / other answer / never sent / given up |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_spike_row(spike, phase) for phase in spike.phases]
    return [*lines, ""]


def _spike_row(spike: SpikeResults, phase: SpikePhase) -> str:
    ideal = spike.ideal(phase.offered)
    answers = ", ".join(f"{status}: {count:,}" for status, count in phase.statuses.items())
    probe = (
        f"{phase.probe_status} in {_ms(phase.probe_ms)}"
        if phase.probe_status is not None
        else phase.probe_outcome
    )
    accounts = phase.accounts
    checked = (
        f"{accounts.lost} / {accounts.doubled} / {accounts.answered_otherwise}"
        f" / {accounts.unknown} / {accounts.given_up}"
        if accounts is not None
        else "n/a"
    )
    return (
        f"| {phase.multiple:g}x ({phase.offered:,.1f}/s) | {phase.requests:,}"
        f" | {phase.goodput:,.1f} | {phase.goodput / ideal if ideal else 0:.0%} | {answers or '-'}"
        f" | {phase.gave_up + phase.connection_errors:,}"
        f" | {_number(phase.admitted_p50_ms, 0)} / {_number(phase.admitted_p99_ms, 0)}"
        f" | {_number(phase.rejected_p99_ms, 0)} | {phase.missing_retry_after:,} | {probe}"
        f" | {phase.peak_rss_bytes.get(USER, 0) / MIB:,.0f}"
        f" | {phase.peak_rss_bytes.get(AUTH, 0) / MIB:,.0f}"
        f" | {phase.service_cpu.get(USER, 0.0):.2f} / {phase.service_cpu.get(AUTH, 0.0):.2f}"
        f" | {phase.generator_cpu:.1%}, {phase.lag_p99_ms:,.0f} | {checked} |"
    )


def _ms(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"  # noqa: PLR2004


def _number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def overload_chart(spike: SpikeResults, path: Path, *, smoke: bool) -> None:
    """Draw offered load against goodput, with the ideal min(offered, capacity), into ``path``.

    Beside it, what the callers got at each rate, as shares of the requests.

    Args:
        spike: What the spike measured.
        path: The PNG file to write.
        smoke: Whether the run was a smoke run (its rates are tiny).
    """
    # Imported here so that nothing is loaded where only the dev requirements are installed.
    import matplotlib as mpl  # noqa: PLC0415

    mpl.use("Agg")  # no display: the chart goes to a file
    import matplotlib.pyplot as plt  # noqa: PLC0415

    offered = [phase.offered for phase in spike.phases]
    goodput = [phase.goodput for phase in spike.phases]
    figure, (curve, answers) = plt.subplots(1, 2, figsize=(13, 5.5), layout="constrained")
    figure.suptitle(
        "Sign-ups under an open-loop spike: user-service → auth-service"
        + (" (smoke run: tiny rates)" if smoke else ""),
        fontsize=13,
    )
    top = max([*offered, spike.capacity]) * 1.05
    curve.plot(
        [0, spike.capacity, top],
        [0, spike.capacity, spike.capacity],
        color="tab:grey",
        linestyle="--",
        label="ideal: min(offered, capacity)",
    )
    curve.axhline(
        spike.capacity * GOODPUT_GOAL,
        color="tab:red",
        linestyle=":",
        linewidth=1,
        label=f"goal: {GOODPUT_GOAL:.0%} of capacity",
    )
    curve.plot(offered, goodput, marker="o", color="tab:blue", label="measured goodput")
    for phase in spike.phases:
        curve.annotate(
            f"{phase.multiple:g}x",
            (phase.offered, phase.goodput),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize=9,
        )
    curve.set_xlim(0, top)
    curve.set_ylim(0, max([*goodput, spike.capacity]) * 1.25)
    curve.set_xlabel("offered load, sign-ups/s")
    curve.set_ylabel("goodput: 201 and 409 answered per second")
    curve.set_title(f"offered load against goodput (capacity {spike.capacity:,.0f}/s)")
    curve.grid(visible=True, alpha=0.3)
    curve.legend(loc="lower right")
    _answers_chart(answers, spike)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _answers_chart(axis: Axes, spike: SpikeResults) -> None:
    kinds: dict[str, Callable[[SpikePhase], int]] = {
        "201 / 409": lambda p: sum(p.statuses.get(s, 0) for s in ADMITTED),
        "429": lambda p: p.statuses.get(429, 0),
        "503 with Retry-After": lambda p: p.statuses.get(503, 0) - p.missing_retry_after,
        "503 without Retry-After": lambda p: p.missing_retry_after,
        "other status": lambda p: sum(
            c for s, c in p.statuses.items() if s not in ADMITTED | {429, 503}
        ),
        "gave up / no answer": lambda p: p.gave_up + p.connection_errors,
    }
    colours = ["tab:green", "tab:orange", "tab:blue", "tab:purple", "tab:red", "black"]
    labels = [f"{phase.multiple:g}x" for phase in spike.phases]
    bottom = [0.0] * len(spike.phases)
    for (kind, count), colour in zip(kinds.items(), colours, strict=True):
        values = [
            count(phase) / phase.requests if phase.requests else 0.0 for phase in spike.phases
        ]
        axis.bar(labels, values, bottom=bottom, label=kind, color=colour)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("share of requests")
    axis.set_xlabel("offered load, in multiples of capacity")
    axis.set_title("what the callers got")
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
