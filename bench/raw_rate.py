"""The raw argon2id rate of this machine's cores: what no sign-up path can pass.

Every sign-up costs one argon2id check in auth-service, so the number of hashes
the cores verify a second, one thread per core in a loop with nothing else
running, is the ceiling every path of the benchmarks is held against.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from argon2 import PasswordHasher

from bench.pyload import PASSWORD
from bench.services import CORES


@dataclass
class RawRate:
    """The raw argon2id verification rate.

    Attributes:
        threads: Threads that verify, one per core.
        verifications: Verifications done, all threads together.
        seconds: Time spent verifying.
        cpu_seconds: CPU time spent verifying, all threads together.
    """

    threads: int
    verifications: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Verifications per second, all threads together."""
        return self.verifications / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms_per_verify(self) -> float | None:
        """CPU time of one verification, in milliseconds; ``None`` before any."""
        return self.cpu_seconds / self.verifications * 1000 if self.verifications else None


def raw_rate(password_hash: str, seconds: float, threads: int = CORES) -> RawRate:
    """Measure argon2 verifications/s of ``password_hash``: one thread per core, in a loop.

    Nothing else of the benchmark runs meanwhile.

    Args:
        password_hash: The hash to verify (its parameters are the ones measured), of
            :data:`bench.pyload.PASSWORD`.
        seconds: How long each thread verifies.
        threads: Threads, one per core by default.

    Returns:
        The verifications, wall time and CPU time.
    """
    raw = RawRate(threads=threads)
    verify_raw(PasswordHasher(), password_hash, PASSWORD, seconds, raw)
    return raw


def verify_raw(
    hasher: PasswordHasher, password_hash: str, password: str, seconds: float, raw: RawRate
) -> None:
    """Verify ``password_hash`` in a loop on ``raw.threads`` threads for ``seconds``.

    The threads start together; ``raw`` gains their verifications, the wall
    time and the CPU time of this process meanwhile (nothing else should run).

    Args:
        hasher: Verifies; the parameters are those encoded in ``password_hash``.
        password_hash: The hash to verify, over and over.
        password: Its password, so that every verification succeeds.
        seconds: How long each thread verifies.
        raw: Where the counts are added.
    """
    start = threading.Barrier(raw.threads)

    def verify_in_a_loop() -> int:
        start.wait()
        deadline = time.perf_counter() + seconds
        done = 0
        while time.perf_counter() < deadline:
            hasher.verify(password_hash, password)
            done += 1
        return done

    started = time.perf_counter()
    cpu = time.process_time()
    with ThreadPoolExecutor(max_workers=raw.threads) as pool:
        raw.verifications += sum(pool.map(lambda _: verify_in_a_loop(), range(raw.threads)))
    raw.seconds += time.perf_counter() - started
    raw.cpu_seconds += time.process_time() - cpu
