"""Configuration of auth-service, read from ``AUTH_SERVICE_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.cpus import usable_cores
from servicekit.database_url import PostgresUrl, SqliteUrl, parse_database_url

DATABASE_URL_SETTING = "AUTH_SERVICE_DATABASE_URL"


class Settings(BaseSettings):
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

    Attributes:
        database_url: ``sqlite:///relative/path``, ``sqlite:////absolute/path``
            or ``postgresql://user:password@host/database``. Never shown in
            ``repr`` or error messages, since it may hold a password.
        database_timeout_seconds: How long a database call may wait: SQLite's
            busy timeout, PostgreSQL's connect and statement timeouts, and the
            time ``/readyz`` allows for its check.
        postgres_max_connections: Connections in the PostgreSQL pool of each process.
        argon2_time_cost: Argon2id iterations (OWASP minimum: 2).
        argon2_memory_cost: Argon2id memory, in KiB (OWASP minimum: 19456, 19 MiB).
        argon2_parallelism: Argon2id lanes (OWASP minimum: 1).
        hash_workers: Threads that run argon2id; by default the CPU cores this
            process may use (its affinity, and its cgroup's CPU quota).
        max_pending_hashes: The most password checks running or waiting, per
            process, whatever the target delay admits (see above).
        target_queue_delay_seconds: The longest a check should wait for a
            thread; the admission limit follows from it (see above).
        lockout_threshold: Failed attempts on one account, within the window,
            after which further attempts are refused with ``429``.
        lockout_window_seconds: The window, counted from the first failure in
            it; the account is refused until the window has passed.
    """

    model_config = SettingsConfigDict(
        env_prefix="AUTH_SERVICE_", frozen=True, hide_input_in_errors=True
    )

    database_url: str = Field(default="sqlite:///var/auth-service.db", repr=False)
    database_timeout_seconds: float = Field(default=5.0, gt=0)
    postgres_max_connections: int = Field(default=10, ge=1)
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_cost: int = Field(default=19456, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    hash_workers: int = Field(default_factory=usable_cores, ge=1)
    max_pending_hashes: int = Field(default=256, ge=1)
    target_queue_delay_seconds: float = Field(default=1.0, gt=0)
    lockout_threshold: int = Field(default=10, ge=1)
    lockout_window_seconds: float = Field(default=900.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _database_url_is_supported(cls, value: str) -> str:
        parse_database_url(value, setting=DATABASE_URL_SETTING)
        return value

    @property
    def database(self) -> SqliteUrl | PostgresUrl:
        """The database that ``database_url`` names."""
        return parse_database_url(self.database_url, setting=DATABASE_URL_SETTING)
