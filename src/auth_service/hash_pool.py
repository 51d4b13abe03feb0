"""A bounded pool of threads that run argon2id off the event loop.

argon2-cffi releases the GIL while it hashes, so threads use every core. The
pool caps the checks running or waiting; past the cap a caller is refused at
once (and answered ``503``) rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future
    from types import TracebackType

    from auth_service.passwords import CheckResult, PasswordHashing


class OverloadedError(Exception):
    """As many password checks as allowed are running or waiting; retry later."""


class HashPool:
    """Runs password checks on ``workers`` threads, with at most ``max_pending`` at a time.

    A caller first reserves a place with :meth:`reserve`, which fails at once
    when the pool is full, then may run one check in it. The place is held
    until the check has finished on its thread, even if the caller stops
    waiting for it, so the cap holds for the work actually queued.
    """

    def __init__(self, hashing: PasswordHashing, *, workers: int, max_pending: int) -> None:
        """Prepare the pool; its threads start with :meth:`open`.

        Args:
            hashing: What the threads run.
            workers: Threads, each running one check at a time.
            max_pending: Places, for checks running or waiting.
        """
        self._hashing = hashing
        self._workers = workers
        self._max_pending = max_pending
        self._pending = 0
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def pending(self) -> int:
        """The places taken: checks running or waiting, and places reserved but not yet used."""
        return self._pending

    async def open(self) -> None:
        """Start the threads, and make the dummy hash on one of them."""
        self._executor = ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="auth-service-hash"
        )
        await asyncio.get_running_loop().run_in_executor(self._executor, self._hashing.dummy_hash)

    def close(self) -> None:
        """Wait for the checks under way, then stop the threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def reserve(self) -> HashSlot:
        """Take a place for one check.

        Returns:
            The place, to be used as a context manager that gives it back.

        Raises:
            OverloadedError: If every place is taken.
        """
        with self._lock:
            if self._pending >= self._max_pending:
                raise OverloadedError
            self._pending += 1
        return HashSlot(submit=self._submit, release=self._release)

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    def _submit(self, password_hash: str | None, password: str) -> Future[CheckResult]:
        if self._executor is None:
            msg = "the hash pool is not open"
            raise RuntimeError(msg)
        return self._executor.submit(self._hashing.check, password_hash, password)


class HashSlot:
    """A place in a :class:`HashPool` for one check."""

    def __init__(
        self,
        *,
        submit: Callable[[str | None, str], Future[CheckResult]],
        release: Callable[[], None],
    ) -> None:
        """Hold a place that the pool has counted.

        Args:
            submit: Queues a check on the pool's threads.
            release: Gives the place back to the pool.
        """
        self._submit = submit
        self._release = release
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

    async def check(self, password_hash: str | None, password: str) -> CheckResult:
        """Run :meth:`PasswordHashing.check` on a pool thread, in this place.

        Args:
            password_hash: The stored hash, or ``None`` for an unknown user.
            password: The password as sent.

        Returns:
            The result of the check.

        Raises:
            RuntimeError: If the place was used already.
        """
        if not self._held:
            msg = "a place in the hash pool runs one check"
            raise RuntimeError(msg)
        future = self._submit(password_hash, password)
        self._held = False
        release = self._release
        future.add_done_callback(lambda _: release())
        return await asyncio.wrap_future(future)
