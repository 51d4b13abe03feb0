from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from servicekit.cpus import quota_cores, usable_cores

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("cpu_max", "cores"),
    [
        ("200000 100000\n", 2),
        ("150000 100000", 2),
        ("50000 100000", 1),
        ("max 100000\n", None),
        ("", None),
        ("lots 100000", None),
        ("0 100000", None),
    ],
)
def test_the_cgroup_quota_is_read_in_whole_cores(cpu_max: str, cores: int | None) -> None:
    assert quota_cores(cpu_max) == cores


def test_a_quota_below_the_affinity_caps_the_cores(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")

    assert usable_cores(cpu_max) == 1


def test_without_a_quota_the_affinity_counts(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")

    assert usable_cores(cpu_max) == len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path / "missing") == len(os.sched_getaffinity(0))


def test_a_quota_above_the_affinity_changes_nothing(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(f"{64 * 100000} 100000\n")

    assert usable_cores(cpu_max) == len(os.sched_getaffinity(0))
