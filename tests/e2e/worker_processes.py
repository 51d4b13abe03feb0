"""The worker processes of ``serve --workers N``, seen from outside: pids, sockets, metrics files.

uvicorn's supervisor starts each worker with multiprocessing's ``spawn``; its
children also include multiprocessing's resource tracker, which is no worker.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from prometheus_client.multiprocess import MultiProcessCollector

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Iterable

    from prometheus_client.metrics_core import Metric

POLL_SECONDS = 0.05

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None], *, timeout: float, what: str, interval: float = POLL_SECONDS
) -> T:
    """Poll ``condition`` until it returns something true; return it.

    Raises:
        AssertionError: If it has not within ``timeout`` seconds; the message names ``what``.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            msg = f"not within {timeout} s: {what} (last seen: {result!r})"
            raise AssertionError(msg)
        time.sleep(interval)


def worker_pids(supervisor: int) -> list[int]:
    """The pids of the uvicorn workers ``supervisor`` has started, in no set order."""
    try:
        children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    except FileNotFoundError:
        return []
    pids = []
    for pid in children:
        with contextlib.suppress(FileNotFoundError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(int(pid))
    return pids


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets process ``pid`` has open."""
    inodes = set()
    with contextlib.suppress(FileNotFoundError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = fd.readlink().name
                if target.startswith("socket:["):
                    inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def _server_inode(port: int, client: socket.socket) -> int:
    """The inode of the server's end of ``client``'s connection to ``port`` (0: not accepted)."""
    client_port = client.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rpartition(":")[2], 16)
        remote_port = int(fields[2].rpartition(":")[2], 16)
        if local_port == port and remote_port == client_port:
            return int(fields[9])
    return 0


def holder(port: int, client: socket.socket, workers: Iterable[int]) -> int | None:
    """The worker that has accepted ``client``'s connection to ``port``, if one has yet."""
    inode = _server_inode(port, client)
    if not inode:
        return None
    return next((pid for pid in workers if inode in socket_inodes(pid)), None)


def sample_value(families: Iterable[Metric], name: str, labels: dict[str, str]) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in families
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def requests_by_worker(directory: Path, labels: dict[str, str]) -> dict[int, float]:
    """The requests matching ``labels`` that each worker has counted in its file, by pid."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        families = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        pid = int(path.stem.removeprefix("counter_"))
        counts[pid] = sample_value(families, "http_requests_total", labels)
    return counts


def wait_for_counted(directory: Path, labels: dict[str, str], total: int) -> dict[int, float]:
    """Wait until the workers' files count ``total`` requests matching ``labels``; return them.

    A worker counts a request just after answering it, so a client may be faster.
    """

    def counted() -> dict[int, float] | None:
        counts = requests_by_worker(directory, labels)
        return counts if sum(counts.values()) >= total else None

    counts = wait_until(
        counted, timeout=10, what=f"the workers count {total} requests matching {labels}"
    )
    assert sum(counts.values()) == total, counts
    return counts


def serving(counts: dict[int, float]) -> int:
    """How many workers have counted requests."""
    return sum(count > 0 for count in counts.values())
