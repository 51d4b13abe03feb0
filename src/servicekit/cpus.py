"""How many CPU cores this process may really use: its affinity and its CPU quota."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""Where cgroup v2 gives the CPU quota of the processes in the container."""


def quota_cores(cpu_max: str) -> int | None:
    """Read a cgroup v2 ``cpu.max``: ``"QUOTA PERIOD"``, or ``"max PERIOD"`` for no quota.

    Args:
        cpu_max: The file's content.

    Returns:
        The quota in whole cores, rounded up and at least 1; ``None`` if there
        is no quota or the content is not of that form.
    """
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":  # noqa: PLR2004
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def usable_cores(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """Return how many CPU cores this process may run on at once (at least 1).

    The cores of its affinity mask, fewer if its cgroup has a CPU quota: in a
    container limited to 2 CPUs on a 64-core host, 2.

    Args:
        cpu_max: The cgroup v2 quota file to read.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota = quota_cores(cpu_max.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError):
        quota = None
    return max(1, min(cores, quota) if quota is not None else cores)
