"""An open-loop load generator: sign-ups sent at a fixed rate, whatever the answers.

wrk and the other closed-loop generators send a request only once an answer
has come back, so an overloaded service slows the load down and hides its
overload. Here request *i* is sent at ``i / rate`` seconds from the start,
answered or not, each on a connection of its own when none is free (no cap on
connections), and each with a client timeout after which its caller gives up.
The latency of a request counts from the time it was due, so a generator
falling behind shows in it instead of hiding it (and the lag is reported).

After the window, it waits for every answer (or give-up), waits ``--drain``
seconds more, and sends one more sign-up: the probe, which tells whether the
service serves normally again.

Each request is ``POST /accounts`` with a new username, ``{prefix}n1``,
``{prefix}n2``..., the probe's ``{prefix}probe``, and the password
:data:`bench.pyload.PASSWORD`. Run it as ``python -m bench.open_loop --url URL
--rate R --seconds S --prefix P --results FILE [--timeout 10] [--drain 1]
[--token-file FILE]``; with a token file, every request presents its client token.
It writes one JSON object: every request's outcome, in order, and the probe's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import uvloop

from bench.clients import authorization
from bench.pyload import PASSWORD
from servicekit.retry_after import parse_retry_after

if TYPE_CHECKING:
    from collections.abc import Mapping

CLIENT_TIMEOUT_SECONDS = 10.0
DRAIN_SECONDS = 1.0
START_DELAY_SECONDS = 0.1
GAVE_UP = "gave up"
CONNECTION_ERROR = "connection error"
ANSWERED = "answered"


@dataclass(frozen=True)
class Outcome:
    """What became of one request.

    Attributes:
        due: When it was due, in seconds from the start of the window.
        lag: How late it was sent, in seconds.
        outcome: ``answered``, ``gave up`` (no answer within the client timeout) or
            ``connection error``.
        status: The answer's status, if answered.
        seconds: From when it was due to its answer or its end.
        retry_after: Whether the answer had a valid ``Retry-After``.
        body_ok: For a ``201``, whether its body names the username sent.
    """

    due: float
    lag: float
    outcome: str
    status: int | None = None
    seconds: float = 0.0
    retry_after: bool = False
    body_ok: bool = False


def username(prefix: str, number: int) -> str:
    """Return the username of request ``number`` (from 1)."""
    return f"{prefix}n{number}"


def probe_username(prefix: str) -> str:
    """Return the username of the probe sent after the window."""
    return f"{prefix}probe"


async def _sign_up(
    session: aiohttp.ClientSession, name: str, due: float, started: float
) -> Outcome:
    loop = asyncio.get_running_loop()
    lag = loop.time() - due
    try:
        async with session.post(
            "/accounts", json={"username": name, "password": PASSWORD}
        ) as response:
            body = await response.read()
            status = response.status
            retry_after = parse_retry_after(response.headers.get("Retry-After")) is not None
    except TimeoutError:
        return Outcome(due - started, lag, GAVE_UP, seconds=loop.time() - due)
    except aiohttp.ClientError:
        return Outcome(due - started, lag, CONNECTION_ERROR, seconds=loop.time() - due)
    body_ok = False
    if status == 201:  # noqa: PLR2004
        try:
            body_ok = json.loads(body).get("username") == name
        except (ValueError, AttributeError):
            body_ok = False
    return Outcome(
        due - started,
        lag,
        ANSWERED,
        status=status,
        seconds=loop.time() - due,
        retry_after=retry_after,
        body_ok=body_ok,
    )


async def run(  # noqa: PLR0913 (the load's parameters, by name)
    url: str,
    *,
    rate: float,
    seconds: float,
    prefix: str,
    client_timeout: float,
    drain: float,
    headers: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Send ``rate`` sign-ups a second to ``url`` for ``seconds``, then the probe.

    Args:
        url: user-service's base URL.
        rate: Requests per second.
        seconds: The window.
        prefix: Prefix of the usernames.
        client_timeout: Seconds after which a caller gives up on its request.
        drain: Seconds to wait, once every request has ended, before the probe.
        headers: Sent with every request (the client token's).

    Returns:
        The results: the parameters, ``requests`` (one :class:`Outcome` each, in
        order) and ``probe``.
    """
    count = round(rate * seconds)
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=client_timeout)
    async with aiohttp.ClientSession(
        url, connector=connector, timeout=timeout, headers=headers
    ) as session:
        started = loop.time() + START_DELAY_SECONDS
        tasks: list[asyncio.Task[Outcome]] = []
        for number in range(1, count + 1):
            due = started + (number - 1) / rate
            delay = due - loop.time()
            # A sleep even when late, so that the requests already due start meanwhile.
            await asyncio.sleep(max(0.0, delay))
            tasks.append(
                asyncio.create_task(_sign_up(session, username(prefix, number), due, started))
            )
        outcomes = await asyncio.gather(*tasks)
        ended = loop.time() - started
        await asyncio.sleep(drain)
        probe = await _sign_up(session, probe_username(prefix), loop.time(), started)
    return {
        "rate": rate,
        "seconds": seconds,
        "prefix": prefix,
        "timeout": client_timeout,
        "drain": drain,
        "ended": ended,
        "requests": [asdict(outcome) for outcome in outcomes],
        "probe": asdict(probe),
    }


def _allow_many_connections() -> None:
    """Raise the limit of open files to its maximum: every request may hold a connection."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    """Run the load and write its results.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--url", required=True, help="user-service's base URL")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, required=True, help="the window's length")
    parser.add_argument("--prefix", required=True, help="prefix of the usernames")
    parser.add_argument("--results", type=Path, required=True, help="where to write the JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        default=CLIENT_TIMEOUT_SECONDS,
        help="seconds before a caller gives up (default: %(default)s)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=DRAIN_SECONDS,
        help="seconds between the last answer and the probe (default: %(default)s)",
    )
    parser.add_argument("--token-file", type=Path, help="the client token every request presents")
    arguments = parser.parse_args(argv)
    _allow_many_connections()
    results = uvloop.run(
        run(
            arguments.url,
            rate=arguments.rate,
            seconds=arguments.seconds,
            prefix=arguments.prefix,
            client_timeout=arguments.timeout,
            drain=arguments.drain,
            headers=authorization(arguments.token_file),
        )
    )
    arguments.results.write_text(json.dumps(results) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
