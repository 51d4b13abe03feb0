"""Threads that run argon2id off the event loop, admitting only the work they can do in time.

argon2-cffi releases the GIL while it hashes, so threads use every core. The
pool measures how long a check takes on its threads and admits a check only
while the queue ahead of it would start it within a target delay and finish
it before its caller's deadline; past that a caller is refused at once (and
answered ``503``) rather than queued. A check still waiting in the queue when
its caller goes away or its deadline passes is dropped without hashing.
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future
    from types import TracebackType

    from auth_service.passwords import CheckResult, PasswordHashing

SMOOTHING = 0.1
"""The weight of the newest check in the running estimate of a check's duration."""


class OverloadedError(Exception):
    """The pool cannot take this check in time; retry later.

    Attributes:
        retry_after: Seconds after which the queue will have drained enough.
    """

    def __init__(self, retry_after: float) -> None:
        """Say when to retry.

        Args:
            retry_after: Seconds after which a check is likely to be admitted.
        """
        super().__init__(f"the hash pool is full; retry after {retry_after:.2f} s")
        self.retry_after = retry_after


class AbandonedError(Exception):
    """The check was dropped before it started: its caller went away or its deadline passed."""


class HashPool:
    """Runs password checks on ``workers`` threads, admitting as many as can be done in time.

    A caller first reserves a place with :meth:`reserve`, which fails at once
    when the pool would not start the check within ``target_delay`` seconds
    or not finish it by the caller's deadline, then may run one check in it.
    The place is held until the check has finished on its thread, even if
    the caller stops waiting for it, so the limit holds for the work actually
    queued. ``max_pending`` caps the places whatever the estimate says.

    The limit follows the measured duration of a check: ``workers *
    target_delay / duration`` places (at least ``workers``), so a slower
    machine, or larger argon2 parameters, admit fewer checks.
    """

    def __init__(  # noqa: PLR0913 (keyword-only, by name)
        self,
        hashing: PasswordHashing,
        *,
        workers: int,
        max_pending: int,
        target_delay: float = 1.0,
        niceness: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare the pool; its threads start with :meth:`open`.

        Args:
            hashing: What the threads run.
            workers: Threads, each running one check at a time.
            max_pending: The most places, for checks running or waiting.
            target_delay: The longest a check should wait in the queue, in seconds.
            niceness: How much lower than the event loop's the threads' CPU
                priority is (Linux ``nice``), so that answering requests,
                refusals included, never waits behind hashing.
            clock: Monotonic seconds, the clock of the deadlines.
        """
        self._hashing = hashing
        self._workers = workers
        self._max_pending = max_pending
        self._target_delay = target_delay
        self._niceness = niceness
        self._clock = clock
        self._pending = 0
        self._check_seconds = 0.0
        self._checks = 0
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def pending(self) -> int:
        """The places taken: checks running or waiting, and places reserved but not yet used."""
        return self._pending

    @property
    def check_seconds(self) -> float:
        """The running estimate of how long a check takes on a thread, in seconds."""
        return self._check_seconds

    @property
    def limit(self) -> int:
        """The places the pool gives now: what its threads can start within the target delay."""
        if self._check_seconds <= 0:
            return self._max_pending
        fits = math.floor(self._workers * self._target_delay / self._check_seconds)
        return max(self._workers, min(self._max_pending, fits))

    async def open(self) -> None:
        """Start the threads, make the dummy hash, and time one check against it.

        The first estimate is a check made once the dummy hash exists, as every
        later check is, not the making of that hash (slower, on a cold thread).
        """
        self._executor = ThreadPoolExecutor(
            max_workers=self._workers,
            thread_name_prefix="auth-service-hash",
            initializer=self._lower_priority,
        )
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._hashing.dummy_hash)
        self._checks = 0
        await loop.run_in_executor(self._executor, self._run, None, "", None)

    def _lower_priority(self) -> None:
        """Give a new pool thread its niceness: on Linux each thread has its own."""
        if self._niceness:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._niceness)

    def close(self) -> None:
        """Wait for the checks under way, then stop the threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def reserve(self, deadline: float | None = None) -> HashSlot:
        """Take a place for one check.

        Args:
            deadline: When the caller stops waiting, on the pool's clock; ``None`` if never.

        Returns:
            The place, to be used as a context manager that gives it back.

        Raises:
            OverloadedError: If the check would not start within the target delay,
                or would not finish by ``deadline``.
        """
        with self._lock:
            refusal = self.refusal(deadline)
            if refusal is not None:
                raise refusal
            self._pending += 1
        return HashSlot(submit=self._submit, release=self._release, clock=self._clock)

    def refusal(self, deadline: float | None = None) -> OverloadedError | None:
        """Return the error :meth:`reserve` would raise now, or ``None`` if it would give a place.

        Args:
            deadline: When the caller stops waiting, on the pool's clock; ``None`` if never.
        """
        pending = self._pending
        # The check starts once the checks ahead of it have, then takes one check's time.
        finish = (pending // self._workers + 1) * self._check_seconds
        if pending >= self.limit or (deadline is not None and self._clock() + finish > deadline):
            return OverloadedError(self._drain_seconds(pending))
        return None

    def _drain_seconds(self, pending: int) -> float:
        """How long the threads take to work through ``pending`` checks."""
        return math.ceil(pending / self._workers) * self._check_seconds

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    def _submit(
        self, password_hash: str | None, password: str, deadline: float | None
    ) -> Future[CheckResult]:
        if self._executor is None:
            msg = "the hash pool is not open"
            raise RuntimeError(msg)
        return self._executor.submit(self._run, password_hash, password, deadline)

    def _run(self, password_hash: str | None, password: str, deadline: float | None) -> CheckResult:
        """Run one check on a pool thread, unless its deadline has passed while it waited."""
        started = self._clock()
        if deadline is not None and started >= deadline:
            raise AbandonedError
        result = self._hashing.check(password_hash, password)
        took = self._clock() - started
        with self._lock:
            # A running mean over the first checks, then a moving average.
            self._checks += 1
            weight = max(SMOOTHING, 1 / self._checks)
            self._check_seconds += weight * (took - self._check_seconds)
        return result


class HashSlot:
    """A place in a :class:`HashPool` for one check."""

    def __init__(
        self,
        *,
        submit: Callable[[str | None, str, float | None], Future[CheckResult]],
        release: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        """Hold a place that the pool has counted.

        Args:
            submit: Queues a check on the pool's threads.
            release: Gives the place back to the pool.
            clock: The pool's clock.
        """
        self._submit = submit
        self._release = release
        self._clock = clock
        self._held = True

    def __enter__(self) -> Self:
        """Return the place itself."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Give the place back, unless a check took it over."""
        if self._held:
            self._held = False
            self._release()

    async def check(
        self,
        password_hash: str | None,
        password: str,
        *,
        deadline: float | None = None,
        gone: asyncio.Future[Any] | None = None,
    ) -> CheckResult:
        """Run :meth:`PasswordHashing.check` on a pool thread, in this place.

        A check still waiting for a thread when ``deadline`` passes or ``gone``
        completes is dropped: it never hashes. One already running goes on to
        its end, and its result is returned.

        Args:
            password_hash: The stored hash, or ``None`` for an unknown user.
            password: The password as sent.
            deadline: When the caller stops waiting, on the pool's clock.
            gone: Completes when the caller has gone away.

        Returns:
            The result of the check.

        Raises:
            RuntimeError: If the place was used already.
            AbandonedError: If the check was dropped before it started.
        """
        if not self._held:
            msg = "a place in the hash pool runs one check"
            raise RuntimeError(msg)
        future = self._submit(password_hash, password, deadline)
        self._held = False
        release = self._release
        future.add_done_callback(lambda _: release())
        answer = asyncio.wrap_future(future)
        if deadline is not None or gone is not None:
            watched: set[asyncio.Future[Any]] = {answer}
            if gone is not None:
                watched.add(gone)
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            await asyncio.wait(watched, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not answer.done() and future.cancel():
                answer.cancel()
                raise AbandonedError
        # Running already: the check is not interrupted, and its outcome counts.
        return await answer
