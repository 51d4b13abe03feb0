"""Configuration of auth-service, read from ``AUTH_SERVICE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from servicekit.cpus import usable_cores
from servicekit.database_url import DatabaseSettings, database_url_field


class Settings(DatabaseSettings):
    """Settings of auth-service.

    Each field is read from the environment variable of the same name in upper
    case with the prefix ``AUTH_SERVICE_``, e.g. ``AUTH_SERVICE_DATABASE_URL``.

    Hashing and its limits: an argon2id check holds ``argon2_memory_cost`` KiB
    while it runs, and only ``hash_workers`` checks run at once, so hashing
    needs at most ``hash_workers * argon2_memory_cost`` KiB (2 * 19 MiB by
    default on two cores). Checks beyond that wait in a queue. The pool
    measures how long a check takes and admits a check only while the queue
    ahead of it would start it within ``target_queue_delay_seconds``, and
    finish it before its caller's deadline (``X-Time-Budget-Ms``): on two
    cores at about 27 ms a check, a target of 1 s admits about 74 checks.
    Past that a request is answered ``503`` with ``Retry-After`` at once,
    before its body is read, rather than queued. ``max_pending_hashes`` caps
    the running and waiting checks whatever the measurement says. The pool is
    per process: with ``serve --workers N``, set ``hash_workers`` to the cores
    divided by ``N``.

    The database settings (``database_url``, ``database_timeout_seconds``,
    ``postgres_max_connections``) are those of
    :class:`~servicekit.database_url.DatabaseSettings`.

    Attributes:
        database_url: Where the credentials are kept (``AUTH_SERVICE_DATABASE_URL``).
        argon2_time_cost: Argon2id iterations (OWASP minimum: 2).
        argon2_memory_cost: Argon2id memory, in KiB (OWASP minimum: 19456, 19 MiB).
        argon2_parallelism: Argon2id lanes (OWASP minimum: 1).
        hash_workers: Threads that run argon2id; by default the CPU cores this
            process may use (its affinity, and its cgroup's CPU quota).
        max_pending_hashes: The most password checks running or waiting, per
            process, whatever the target delay admits (see above).
        target_queue_delay_seconds: The longest a check should wait for a
            thread; the admission limit follows from it (see above).
        hash_niceness: How much lower the hashing threads' CPU priority is
            than the event loop's (Linux ``nice``, 0 to 19), so that requests,
            refusals included, are answered promptly while the cores hash.
        lockout_threshold: Failed attempts on one account, within the window,
            after which further attempts are refused with ``429``.
        lockout_window_seconds: The window, counted from the first failure in
            it; the account is refused until the window has passed.
        max_tracked_unknown_names: The most unknown usernames whose failures
            are counted at once (each as a keyed digest, never the name); see
            :mod:`auth_service.lockout` for what happens at the cap.
        client_token_cache_seconds: How long the answer to "which client holds
            this token" is used again before the database is asked anew; a
            removed token is refused at the latest this long after ``clients
            remove`` (0: ask every time).
    """

    model_config = SettingsConfigDict(
        env_prefix="AUTH_SERVICE_", frozen=True, hide_input_in_errors=True
    )

    database_url: str = database_url_field("sqlite:///var/auth-service.db")
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_cost: int = Field(default=19456, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    hash_workers: int = Field(default_factory=usable_cores, ge=1)
    max_pending_hashes: int = Field(default=256, ge=1)
    target_queue_delay_seconds: float = Field(default=1.0, gt=0)
    hash_niceness: int = Field(default=0, ge=0, le=19)
    lockout_threshold: int = Field(default=10, ge=1)
    lockout_window_seconds: float = Field(default=900.0, gt=0)
    max_tracked_unknown_names: int = Field(default=100_000, ge=1)
    client_token_cache_seconds: float = Field(default=5.0, ge=0)
