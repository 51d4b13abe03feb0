"""Benchmarks of the sign-up path, its services run as real processes: ``python -m bench``.

Scenarios, one module each (``python -m bench --scenarios NAME``):
    real_path (real-path): sign-ups/s through user-service, frontend-web's form and the seed's
        design, to the real auth-service, against the raw argon2id rate of the same cores.
    spike (spike): an open-loop spike at 1x to 10x capacity: goodput, answers, latency, memory,
        accounts.
    overhead (designs): user-service's own overhead behind a stand-in auth-service, beside the
        seed's design and the no-hop limit.
    auth_throughput (auth): auth-service alone against the raw argon2id rate; also a command.
    contract_suite (contracts): the wall time of the contract suite.
    growth (growth): ``POST`` and ``GET /accounts`` as stored accounts grow to a million.

What the scenarios share:
    runs: a run's settings (RunConfig), each variant's rounds and their medians (Series).
    commands: how to start each service, as shipped or as a baseline, on a free port.
    clients: every caller registered with the service it calls (``clients add``), its token
        in a file.
    services: services running as processes, their CPU time and peak memory; built on
        ``tests.support.processes`` (free ports, start-up, stopping), shared with the tests.
    credentials: auth-service's users for a load, seeded with one real hash.
    raw_rate: the raw argon2id rate of the machine's cores.
    load: drive a service with wrk (or a small Python generator) and check every answer.
    open_loop, form_load, pyload: load generators run as processes: at a fixed rate whatever
        the answers; browsers through frontend-web's form; the Python stand-in for wrk.
    stand_in_auth: a stand-in for auth-service that always says yes after a fixed latency.
    seed_design: the seed's design (a synchronous HTTP call inside ``async def``), as a baseline.
    goals, report, real_report: each goal and how a run did, the markdown report, the charts.

Tools of their own:
    compare: user-service at several commits, side by side.
    profile_user_service: where user-service's time goes, sampled by py-spy.
"""
