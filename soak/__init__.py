"""The soak test of trio-asyncio: ``python -m soak`` or ``make soak``.

It churns connections, subprocesses, loops, executor jobs, cross-calls and
timers on our loop for minutes, samples fds, threads and RSS once a second,
and fails on any error, on RSS growth after warm-up, and on fds or threads
not returning to their starting counts (``soak/README.rst``).

Modules, by concept:

- ``state``: the shared counters, recorded errors and stop signal;
- ``echo``: echo servers and one-shot clients (TCP/Unix, Protocol/streams);
- ``churn``: the churn itself, Trio-hosted (main thread) and sync-mode (a thread);
- ``sampler``: /proc metrics and the sampling thread that writes the CSV;
- ``checks``: the pass/fail criteria;
- ``report``: the printed summary and the PNG plot;
- ``runner``: the command line and one run from start to verdict.
"""
