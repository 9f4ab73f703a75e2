"""``python -m soak``: the command line, and one soak run from start to verdict."""

from __future__ import annotations

import argparse
import faulthandler
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path

from soak.checks import ResourceVerdict, judge_rss, warmup_seconds
from soak.churn import GRACE, HOST_CONNECTION_RATE, run_churn
from soak.report import Outcome, group_total, plot, summary
from soak.sampler import Sample, Sampler, describe_threads, fd_table, read_samples, thread_ids
from soak.state import SoakState


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m soak",
        description="Churn connections, subprocesses, loops and executor jobs on trio-asyncio "
        "for a while; fail on errors, growing RSS, or leaked fds or threads.",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--minutes", type=float, default=10.0, help="how long to churn (default 10)"
    )
    length.add_argument(
        "--seconds", type=float, default=None, help="how long to churn, in seconds (smoke runs)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("build/soak"),
        help="where soak.csv and soak.png go (default build/soak)",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between samples (default 1)"
    )
    parser.add_argument(
        "--rss-limit",
        type=float,
        default=5.0,
        metavar="PCT",
        help="fail if RSS grows by more than PCT%% after warm-up (default 5)",
    )
    parser.add_argument(
        "--thread-drain",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long to wait after the churn for threads to exit (default 15: more "
        "than the 10 s after which an idle Trio cache thread exits)",
    )
    parser.add_argument(
        "--connection-rate",
        type=float,
        default=HOST_CONNECTION_RATE,
        metavar="N",
        help=f"connections per second of the host loop's workers (default "
        f"{HOST_CONNECTION_RATE:g}; 0: as fast as they go); short-lived loops add their own",
    )
    parser.add_argument("--no-plot", action="store_true", help="don't draw soak.png")
    args = parser.parse_args(argv)
    args.duration = args.seconds if args.seconds is not None else args.minutes * 60
    if args.duration <= 0 or args.interval <= 0:
        parser.error("the duration and the interval must be positive")
    return args


def _progress(sample: Sample) -> None:
    c = sample.counts
    print(
        f"[{sample.t:6.0f} s] rss {sample.rss_kib / 1024:5.1f} MiB "
        f"(anon {sample.rss_anon_kib / 1024:5.1f}), fds {sample.fds:4d}, "
        f"threads {sample.threads:3d} | connections {group_total(c, 'connections'):,}, "
        f"subprocesses {group_total(c, 'subprocesses'):,}, loops {group_total(c, 'loops'):,}, "
        f"executor jobs {group_total(c, 'executor_jobs'):,}, errors {sample.errors}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if not sys.platform.startswith("linux"):
        print("python -m soak: needs Linux (it reads /proc/self)", file=sys.stderr)
        return 2
    duration: float = args.duration
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "soak.csv"
    png_path = out / "soak.png"
    png_path.unlink(missing_ok=True)  # never leave an old run's plot next to a new CSV

    warmup = warmup_seconds(duration)
    print(
        f"soak: churning for {duration:.0f} s (warm-up {warmup:.0f} s), "
        f"sampling every {args.interval:g} s into {csv_path}",
        flush=True,
    )
    gc.collect()
    state = SoakState(duration)
    sampler = Sampler(state, csv_path, args.interval, warmup, _progress, max(10.0, duration / 20))
    sampler.start()
    # A hang must not hold CI forever: dump every thread's stack and exit. Armed
    # before the starting counts are taken, and cancelled after the final
    # ones, because its watchdog is a thread of its own.
    faulthandler.dump_traceback_later(duration + 3 * GRACE + args.thread_drain + 60, exit=True)
    start = sampler.sample_now("start")
    with sampler.lock:
        fds_at_start = fd_table()
    tids_at_start = thread_ids()

    interrupted = False
    drain = 0.0
    try:
        with state.catching_stray_errors():
            socket_dir = tempfile.mkdtemp(prefix="soak-")
            try:
                run_churn(state, socket_dir, args.connection_rate)
            except KeyboardInterrupt:
                interrupted = True
            except Exception as exc:
                state.record_error("churn", exc)
            finally:
                shutil.rmtree(socket_dir, ignore_errors=True)
            churn_seconds = time.monotonic() - state.started
            print(f"soak: churn stopped at {churn_seconds:.1f} s; waiting for threads", flush=True)
            gc.collect()
            # Threads that exit by themselves (see soak.checks): wait for them.
            drain_started = time.monotonic()
            while thread_ids() - tids_at_start and (
                time.monotonic() - drain_started < args.thread_drain
            ):
                time.sleep(0.1)
            drain = time.monotonic() - drain_started
            gc.collect()
    except KeyboardInterrupt:
        interrupted = True
        churn_seconds = time.monotonic() - state.started

    end = sampler.sample_now("end", last=True)
    with sampler.lock:
        fds_at_end = fd_table()
    leftover_threads = describe_threads(thread_ids() - tids_at_start)
    faulthandler.cancel_dump_traceback_later()
    sampler.stop()

    resources = ResourceVerdict(
        fds_start=start.fds,
        fds_end=end.fds,
        leftover_fds={
            fd: target for fd, target in fds_at_end.items() if fds_at_start.get(fd) != target
        },
        threads_start=start.threads,
        threads_end=end.threads,
        leftover_threads=leftover_threads,
        thread_drain_seconds=drain,
    )
    samples = read_samples(csv_path)
    outcome = Outcome(
        duration=duration,
        churn_seconds=churn_seconds,
        total_seconds=end.t,
        counts=end.counts,
        rss=judge_rss(samples, duration, args.interval, args.rss_limit),
        resources=resources,
        rss_start_kib=start.rss_kib,
        rss_end_kib=end.rss_kib,
        rss_anon_end_kib=end.rss_anon_kib,
        errors=state.error_count,
        interrupted=interrupted,
    )
    drawn = False
    if not args.no_plot:
        drawn = plot(samples, outcome, png_path)
        if not drawn:
            print(
                "soak: matplotlib is not installed, no plot "
                "(pip install -e '.[soak]', or `make soak`)",
                file=sys.stderr,
            )
    print(summary(outcome, state, csv_path, png_path if drawn else None), flush=True)
    return 0 if outcome.passed else 1
