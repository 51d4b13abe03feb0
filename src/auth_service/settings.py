"""Configuration of auth-service, read from ``AUTH_SERVICE_*`` environment variables."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from auth_service.database_url import sqlite_path

if TYPE_CHECKING:
    from pathlib import Path


def _cpu_cores() -> int:
    return os.cpu_count() or 1


class Settings(BaseSettings):
    """Settings of auth-service.

    Each field is read from the environment variable of the same name in upper
    case with the prefix ``AUTH_SERVICE_``, e.g. ``AUTH_SERVICE_DATABASE_URL``.
    The argon2id defaults are the OWASP minimum.

    Attributes:
        database_url: ``sqlite:///relative/path`` or ``sqlite:////absolute/path``.
        argon2_time_cost: Argon2 iterations.
        argon2_memory_cost: Argon2 memory, in KiB.
        argon2_parallelism: Argon2 lanes.
        hash_workers: Threads that hash passwords concurrently; each one may
            hold ``argon2_memory_cost`` KiB at a time.
    """

    model_config = SettingsConfigDict(
        env_prefix="AUTH_SERVICE_", frozen=True, hide_input_in_errors=True
    )

    database_url: str = "sqlite:///var/auth-service.db"
    argon2_time_cost: int = Field(default=2, ge=1)
    argon2_memory_cost: int = Field(default=19456, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    hash_workers: int = Field(default_factory=_cpu_cores, ge=1)

    @field_validator("database_url")
    @classmethod
    def _database_url_names_a_sqlite_file(cls, value: str) -> str:
        sqlite_path(value)
        return value

    @property
    def database_path(self) -> Path:
        """The SQLite file that ``database_url`` names."""
        return sqlite_path(self.database_url)
