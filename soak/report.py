"""The end of a soak run: the printed summary and the PNG plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from soak.checks import ResourceVerdict, RssVerdict, warmup_seconds
from soak.sampler import Sample
from soak.state import GROUPS, SoakState

#: How each group's members are named in the summary.
_MEMBER_LABELS = {
    "conn_tcp_protocol": "TCP Protocol",
    "conn_tcp_streams": "TCP streams",
    "conn_unix_protocol": "Unix Protocol",
    "conn_unix_streams": "Unix streams",
    "loops_open_loop": "open_loop",
    "loops_run": "trio_asyncio.run",
    "loops_sync": "sync",
    "exec_default": "default executor",
    "exec_trio": "TrioExecutor",
    "cross_aio_as_trio": "aio_as_trio",
    "cross_trio_as_aio": "trio_as_aio",
    "timers": "call_later",
    "call_soon": "call_soon",
}


@dataclass
class Outcome:
    """Everything the summary and the plot show."""

    duration: float  # the churn's planned length
    churn_seconds: float  # from the start until every churn thread had stopped
    total_seconds: float  # including the thread drain
    counts: dict[str, int]
    rss: RssVerdict
    resources: ResourceVerdict
    rss_start_kib: int
    rss_end_kib: int
    rss_anon_end_kib: int
    errors: int
    interrupted: bool

    @property
    def passed(self) -> bool:
        return (
            not self.interrupted
            and self.errors == 0
            and self.rss.passed
            and self.resources.fds_passed
            and self.resources.threads_passed
        )


def group_total(counts: dict[str, int], group: str) -> int:
    return sum(counts[name] for name in GROUPS[group])


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def summary(outcome: Outcome, state: SoakState, csv_path: Path, png_path: Path | None) -> str:
    """The text printed at the end of the run."""
    counts = outcome.counts
    res = outcome.resources
    rss = outcome.rss
    minutes = outcome.duration / 60
    lines = ["", "======== soak summary ========"]
    lines.append(
        f"duration:      {outcome.duration:.0f} s of churn ({minutes:.1f} min); all stopped "
        f"at {outcome.churn_seconds:.1f} s, done at {outcome.total_seconds:.1f} s"
    )
    for group in GROUPS:
        members = GROUPS[group]
        total = group_total(counts, group)
        line = f"{group.replace('_', ' ') + ':':<15}{total:>10,}"
        if len(members) > 1:
            line += "  (" + ", ".join(f"{_MEMBER_LABELS[m]} {counts[m]:,}" for m in members)
            if group == "connections":
                line += f"; {counts['conn_from_sync']:,} from sync loops"
            line += ")"
        lines.append(line)
    if outcome.duration > 0:
        rates = ", ".join(
            f"{group_total(counts, g) / outcome.duration:,.1f} {g.replace('_', ' ')}/s"
            for g in ("connections", "subprocesses", "loops")
        )
        lines.append(f"rates:         {rates}")
    lines.append(f"errors:        {outcome.errors:,}  {'OK' if outcome.errors == 0 else 'FAIL'}")
    lines.append(
        f"fds:           start {res.fds_start}, end {res.fds_end}  "
        f"{'OK' if res.fds_passed else 'FAIL'}"
    )
    for fd, target in sorted(res.leftover_fds.items()):
        lines.append(f"                 left open: fd {fd} -> {target}")
    lines.append(
        f"threads:       start {res.threads_start}, end {res.threads_end} "
        f"(after {res.thread_drain_seconds:.1f} s of drain)  "
        f"{'OK' if res.threads_passed else 'FAIL'}"
    )
    for tid, name, idle_trio in res.leftover_threads:
        why = "idle Trio cache worker, tolerated" if idle_trio else "LEAKED"
        lines.append(f"                 left: tid {tid} {name!r} ({why})")
    if rss.checked:
        assert rss.first_window and rss.last_window and rss.first_median_kib
        assert rss.last_median_kib is not None and rss.growth_pct is not None
        lines.append(
            f"RSS (anon):    after warm-up {_mib(rss.first_median_kib)} "
            f"(median of {rss.first_window[0]:.0f}-{rss.first_window[1]:.0f} s), "
            f"end of churn {_mib(rss.last_median_kib)} "
            f"(median of {rss.last_window[0]:.0f}-{rss.last_window[1]:.0f} s): "
            f"{rss.growth_pct:+.1f}% (limit {rss.limit_pct:g}%)  "
            f"{'OK' if rss.passed else 'FAIL'}"
        )
    else:
        lines.append(f"RSS (anon):    {rss.note}  {'OK' if rss.passed else 'FAIL'}")
    slope = (
        f"; trend after warm-up {rss.slope_mib_per_min:+.2f} MiB/min"
        if rss.slope_mib_per_min is not None
        else ""
    )
    lines.append(
        f"               after the churn (gc done) {_mib(outcome.rss_anon_end_kib)}{slope}"
    )
    lines.append(
        f"RSS (total):   at start {_mib(outcome.rss_start_kib)}, "
        f"after the churn {_mib(outcome.rss_end_kib)} (not judged: see soak/checks.py)"
    )
    if state.errors or state.error_kinds:
        lines.append("")
        lines.append(f"-------- errors ({state.error_count:,}) by kind --------")
        for kind, n in state.error_kinds.most_common():
            lines.append(f"{n:>8,}  {kind}")
        lines.append(f"-------- the first {len(state.errors)} in full --------")
        for record in state.errors:
            lines.append(f"[{record.at:.1f} s] {record.where}: {record.summary}")
            lines.extend("    " + line for line in record.details.rstrip().splitlines())
    lines.append("")
    lines.append(f"csv:  {csv_path}")
    lines.append(f"plot: {png_path if png_path is not None else '(not drawn)'}")
    if outcome.interrupted:
        lines.append("RESULT: FAIL (interrupted)")
    else:
        lines.append(f"RESULT: {'PASS' if outcome.passed else 'FAIL'}")
    return "\n".join(lines)


def plot(samples: list[Sample], outcome: Outcome, png_path: Path) -> bool:
    """Draw fds, threads, RSS and the churn counts over time into *png_path*.

    Returns False (and draws nothing) when matplotlib is not installed: it
    comes with the ``soak`` extra (``pip install -e '.[soak]'``, which
    ``make soak`` does).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    ts = [s.t for s in samples]
    counts = outcome.counts
    rss = outcome.rss
    warmup = warmup_seconds(outcome.duration)

    fig, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    ax_rss, ax_fds, ax_threads, ax_counts = axes

    ax_rss.plot(
        ts, [s.rss_kib / 1024 for s in samples], color="tab:cyan", lw=1, label="RSS (total)"
    )
    ax_rss.plot(
        ts,
        [s.rss_anon_kib / 1024 for s in samples],
        color="tab:blue",
        lw=1,
        label="RSS (anonymous, judged)",
    )
    if rss.checked:
        assert rss.first_window and rss.last_window
        assert rss.first_median_kib is not None and rss.last_median_kib is not None
        for (lo, hi), median, label in (
            (rss.first_window, rss.first_median_kib, "median after warm-up"),
            (rss.last_window, rss.last_median_kib, f"median at end ({rss.growth_pct:+.1f}%)"),
        ):
            ax_rss.hlines(median / 1024, lo, hi, colors="tab:red", lw=2.5, label=label)
        ax_rss.hlines(
            rss.first_median_kib * (1 + rss.limit_pct / 100) / 1024,
            rss.first_window[0],
            rss.last_window[1],
            colors="tab:red",
            linestyles="--",
            lw=1,
            label=f"limit (+{rss.limit_pct:g}%)",
        )
    ax_rss.set_ylabel("RSS (MiB)")

    ax_fds.plot(ts, [s.fds for s in samples], color="tab:green", lw=1, label="open fds")
    ax_fds.axhline(
        outcome.resources.fds_start, color="grey", ls="--", lw=1, label="at start (must return)"
    )
    ax_fds.set_ylabel("open fds")

    ax_threads.plot(ts, [s.threads for s in samples], color="tab:purple", lw=1, label="threads")
    ax_threads.axhline(
        outcome.resources.threads_start, color="grey", ls="--", lw=1, label="at start"
    )
    ax_threads.set_ylabel("threads")

    for group in GROUPS:
        values = [sum(s.counts[m] for m in GROUPS[group]) for s in samples]
        ax_counts.plot(
            ts,
            values,
            lw=1.2,
            label=f"{group.replace('_', ' ')}: {group_total(counts, group):,}",
        )
    ax_counts.set_yscale("symlog", linthresh=10)
    ax_counts.set_ylabel("cumulative count")
    ax_counts.set_xlabel("seconds")

    for ax in axes:
        ax.axvspan(0, warmup, color="0.92", zorder=0)
        ax.axvline(outcome.duration, color="0.5", ls=":", lw=1)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    ax_rss.text(
        warmup / 2, 0.02, "warm-up", transform=ax_rss.get_xaxis_transform(), ha="center", fontsize=8
    )

    verdict = "PASS" if outcome.passed else "FAIL"
    fig.suptitle(
        f"trio-asyncio soak, {outcome.duration / 60:.1f} min: {verdict}\n"
        f"{group_total(counts, 'connections'):,} connections, "
        f"{group_total(counts, 'subprocesses'):,} subprocesses, "
        f"{group_total(counts, 'loops'):,} loops, "
        f"{group_total(counts, 'executor_jobs'):,} executor jobs, "
        f"{group_total(counts, 'cross_calls'):,} cross-calls, "
        f"{outcome.errors:,} errors",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return True
