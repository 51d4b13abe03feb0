"""Benchmarks of user-service and its neighbours, run as real processes: ``python -m bench``.

Modules:
    processes: start and stop services on free ports; their CPU time and peak memory.
    stand_in_auth: a stand-in for auth-service that always says yes after a fixed latency.
    seed_design: the seed's design (a synchronous HTTP call inside ``async def``), as a baseline.
    load: drive a service with wrk (or a small Python generator) and check every answer.
    scenarios: the four measurements of the issue.
    report: the markdown table and the chart.
"""
