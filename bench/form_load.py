"""Sign-ups through frontend-web's form, as browsers make them: a closed-loop load generator.

Each of ``--connections`` loops is one browser (its own cookie jar and
connection): ``GET /`` for a fresh form (the CSRF cookie, and in the form the
CSRF token and the idempotency key), then ``POST /signup`` with those fields
and a new username, over and over until the time is up. A sign-up is good
only if the answer is ``200`` and the page shows the account created for that
username. The latency is that of ``POST /signup`` (what a person waits for
after pressing the button); ``GET /``'s is reported beside it.

The form's hidden fields are read from the page, whatever their names, so
only the visible fields (``username``, ``password``) are assumed.

It writes the JSON that the wrk scripts write (``bench/wrk/common.lua``), plus
``get_p99_us``. Run it as ``python -m bench.form_load --url URL --connections N
--seconds S --prefix P --results FILE``; usernames are ``{prefix}t0n1``,
``{prefix}t0n2``..., one counter for all loops, and every password is
:data:`bench.pyload.PASSWORD`.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import itertools
import json
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import uvloop

from bench.pyload import PASSWORD, Tally, quantile, wrk_results

if TYPE_CHECKING:
    from collections.abc import Iterator

REQUEST_TIMEOUT_SECONDS = 10.0
FORM_ACTION = "/signup"
MAX_EXAMPLE = 200


class FormFields(HTMLParser):
    """The hidden fields of the sign-up form of a page (``<form action="/signup">``)."""

    def __init__(self) -> None:
        """Start with no fields."""
        super().__init__()
        self.hidden: dict[str, str] = {}
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Note the form's start and each of its hidden inputs."""
        attributes = dict(attrs)
        if tag == "form":
            self._in_form = attributes.get("action") == FORM_ACTION
        elif tag == "input" and self._in_form and attributes.get("type") == "hidden":
            name = attributes.get("name")
            if name:
                self.hidden[name] = attributes.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        """Note the form's end."""
        if tag == "form":
            self._in_form = False


def hidden_fields(page: str) -> dict[str, str]:
    """Return the hidden fields of the sign-up form in ``page`` (empty if it has none)."""
    parser = FormFields()
    parser.feed(page)
    parser.close()
    return parser.hidden


def shows_account(page: str, username: str) -> bool:
    """Tell whether a page is the one shown for an account created for ``username``."""
    return "Account created" in page and f">{html.escape(username)}<" in page


@dataclass
class _Tally(Tally):
    form_latencies: list[float] = field(default_factory=list)

    def count_bad(self, example: str) -> None:
        self.bad += 1
        if not self.example:
            self.example = " ".join(example.split())[:MAX_EXAMPLE]


async def _browser(url: str, deadline: float, usernames: Iterator[str], tally: _Tally) -> None:
    # A browser: its own cookies (127.0.0.1 is an IP address, hence unsafe=True) and connection.
    async with aiohttp.ClientSession(
        url,
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(limit=1),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
    ) as session:
        while time.perf_counter() < deadline:
            try:
                await _sign_up(session, next(usernames), tally)
            except TimeoutError:
                tally.timeouts += 1
            except aiohttp.ClientError:
                tally.connection_errors += 1


async def _sign_up(session: aiohttp.ClientSession, username: str, tally: _Tally) -> None:
    asked = time.perf_counter()
    async with session.get("/") as response:
        status, page = response.status, await response.text()
    tally.form_latencies.append(time.perf_counter() - asked)
    fields = hidden_fields(page)
    if status != 200 or not fields:  # noqa: PLR2004
        tally.count_bad(f"GET / {status} {page}")
        return
    sent = time.perf_counter()
    async with session.post(
        FORM_ACTION, data={**fields, "username": username, "password": PASSWORD}
    ) as response:
        status, page = response.status, await response.text()
    tally.latencies.append(time.perf_counter() - sent)
    if status == 200 and shows_account(page, username):  # noqa: PLR2004
        tally.good += 1
    else:
        tally.count_bad(f"{status} {page}")


async def run(url: str, *, connections: int, seconds: float, prefix: str) -> dict[str, object]:
    """Sign up through the form at ``url`` from ``connections`` browsers for ``seconds``.

    Args:
        url: frontend-web's base URL.
        connections: Browsers, each signing up one account after another.
        seconds: How long to run.
        prefix: Prefix of the usernames.

    Returns:
        The results, with the keys the wrk scripts write.
    """
    tally = _Tally()
    usernames = (f"{prefix}t0n{counter}" for counter in itertools.count(1))
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_browser(url, deadline, usernames, tally) for _ in range(connections)))
    duration = time.perf_counter() - started
    return {
        **wrk_results(tally, duration),
        "get_p99_us": round(quantile(tally.form_latencies, 99) * 1e6),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the load and write its results.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--url", required=True, help="frontend-web's base URL")
    parser.add_argument("--connections", type=int, default=32, help="browsers (default: 32)")
    parser.add_argument("--seconds", type=float, default=1.0, help="how long (default: 1)")
    parser.add_argument("--prefix", required=True, help="prefix of the usernames")
    parser.add_argument("--results", type=Path, required=True, help="where to write the JSON")
    arguments = parser.parse_args(argv)
    results = uvloop.run(
        run(
            arguments.url,
            connections=arguments.connections,
            seconds=arguments.seconds,
            prefix=arguments.prefix,
        )
    )
    arguments.results.write_text(json.dumps(results) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
