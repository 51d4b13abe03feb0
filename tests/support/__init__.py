"""Helpers shared by the test suites: processes and real servers on free ports.

``processes`` (standard library only) is shared with the benchmarks in ``bench/``.
"""
