"""Turning measurements into statistics, the text table and the JSON file."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from ._registry import Workload

#: A cell whose (max - min) / median over the repeats is above this gets "~".
NOISY_SPREAD = 0.20

_STATUS_TEXT = {
    "n/a": "-",
    "skipped": "skipped",
    "notimpl": "not impl.",
    "error": "ERROR",
}


# ---- statistics -------------------------------------------------------------------


def summarize(times: list[float], ops: int) -> dict[str, Any]:
    """Median, spread and per-operation time of one loop's repeats."""
    median = statistics.median(times)
    return {
        "times": times,
        "median": median,
        "min": min(times),
        "max": max(times),
        "spread": (max(times) - min(times)) / median if median > 0 else 0.0,
        "per_op": median / ops,
    }


def add_ratios(results: dict[str, dict[str, Any]]) -> None:
    """Fill in each cell's ``ratio``: per-op time over the stdlib's (or the baseline's)."""
    for row in results.values():
        reference_row = results.get(row["baseline"] or row["name"])
        reference = None
        if reference_row is not None:
            stdlib = reference_row["loops"].get("stdlib", {})
            if stdlib.get("status") == "ok":
                reference = stdlib["per_op"]
        for cell in row["loops"].values():
            if cell.get("status") == "ok" and reference:
                cell["ratio"] = cell["per_op"] / reference
            else:
                cell["ratio"] = None


def geomeans(results: dict[str, dict[str, Any]], loops: list[str]) -> dict[str, dict[str, Any]]:
    """Per group ("core", "io") and loop: geometric mean of the ratios, and over how many."""
    out: dict[str, dict[str, Any]] = {}
    for group in ("core", "io"):
        rows = [r for r in results.values() if r["group"] == group and not r["baseline"]]
        if not rows:
            continue
        out[group] = {}
        for kind in loops:
            ratios = [
                r["loops"][kind]["ratio"]
                for r in rows
                if kind in r["loops"] and r["loops"][kind].get("ratio")
            ]
            applicable = [r for r in rows if r["loops"].get(kind, {}).get("status") != "n/a"]
            out[group][kind] = {
                "geomean": math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else None,
                "count": len(ratios),
                "of": len(applicable),
            }
    return out


# ---- the table --------------------------------------------------------------------


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    return f"{value:.2f}x"


def _row_unit(row: dict[str, Any]) -> tuple[str, float, bool]:
    """(unit label, divisor or multiplier, whether the value is a rate) for a row."""
    if row["display"] == "throughput":
        return "MB/s", 1e6, True
    if row["display"] == "rate":
        return f"{row['unit']}s/s", 1.0, True
    per_ops = [c["per_op"] for c in row["loops"].values() if c.get("status") == "ok"]
    if per_ops and min(per_ops) >= 1e-2:
        return f"ms/{row['unit']}", 1e-3, False
    return f"µs/{row['unit']}", 1e-6, False


def _cell(row: dict[str, Any], kind: str, scale: float, is_rate: bool) -> str:
    cell = row["loops"].get(kind)
    if cell is None:
        return ""
    status = cell["status"]
    if status != "ok":
        return _STATUS_TEXT.get(status, status)
    value = (1.0 / cell["per_op"]) / scale if is_rate else cell["per_op"] / scale
    text = _number(value)
    if cell["ratio"] is not None:
        flags = ("†" if row["baseline"] else "") + ("~" if cell["spread"] > NOISY_SPREAD else "")
        text += f" {_ratio(cell['ratio']):>6}{flags:<2}"
    else:
        text += " " * 9
    return text


def format_table(report: dict[str, Any]) -> str:
    """The human-readable table (with header, legend, geometric means and notes)."""
    meta = report["meta"]
    loops: list[str] = report["loops"]
    results: dict[str, dict[str, Any]] = report["workloads"]
    lines = [
        "trio-asyncio {trio_asyncio} | Python {python} | trio {trio} | uvloop {uvloop} | "
        "{platform} | {cpus} CPUs | load {load}".format(**meta["versions"], **meta["machine"]),
        "median of {repeat} runs per cell, {isolation}, gc={gc}{quick}".format(
            repeat=meta["repeat"],
            isolation="one process per run" if meta["isolation"] == "process" else "in-process",
            gc=meta["gc"],
            quick=", quick sizes" if meta["quick"] else "",
        ),
        "",
    ]
    name_width = max([len(n) for n in results] + [len("geomean (core)"), 8])
    size_width = max([len(f"{r['size']:,}") for r in results.values()] + [4])
    cells: dict[str, list[str]] = {}
    for name, row in results.items():
        unit, scale, is_rate = _row_unit(row)
        cells[name] = [f"{row['size']:,}", unit] + [_cell(row, k, scale, is_rate) for k in loops]
    unit_width = max([len(c[1]) for c in cells.values()] + [len("ratio")])
    loop_width = max([len(k) for k in loops] + [len(c) for r in cells.values() for c in r[2:]])
    header = (
        f"{'workload':<{name_width}}  {'size':>{size_width}}  {'unit':<{unit_width}}"
        + "".join(f"  {k:>{loop_width}}" for k in loops)
    )
    lines += [header, "-" * len(header)]
    group = None
    for name, row in results.items():
        if row["group"] != group:
            if group is not None:
                lines.append("")
            group = row["group"]
        size, unit, *loop_cells = cells[name]
        lines.append(
            f"{name:<{name_width}}  {size:>{size_width}}  {unit:<{unit_width}}"
            + "".join(f"  {c:>{loop_width}}" for c in loop_cells)
        )
    means = report["geomean"]
    if means:
        lines.append("-" * len(header))
        for group_name, per_loop in means.items():
            texts = []
            for kind in loops:
                entry = per_loop.get(kind, {})
                if entry.get("geomean") is None:
                    texts.append("-")
                    continue
                partial = (
                    f" [{entry['count']}/{entry['of']}]" if entry["count"] < entry["of"] else ""
                )
                texts.append(f"{_ratio(entry['geomean'])}{partial}")
            lines.append(
                f"{'geomean (' + group_name + ')':<{name_width}}  {'':>{size_width}}  "
                f"{'ratio':<{unit_width}}" + "".join(f"  {t:>{loop_width}}" for t in texts)
            )
    lines += [
        "",
        "Each cell: the median time per operation (MB/s or operations/s where the unit says so),",
        "then the ratio of its time to the stdlib loop's (lower is better: 0.50x = twice as fast).",
        "† ratio to the stdlib's task_roundtrip (the cross-calls have no stdlib equivalent).",
        f"~ noisy: the runs of this cell spread over more than {NOISY_SPREAD:.0%} of the median.",
        "[k/n] geometric mean over only k of the n workloads (the others did not run).",
    ]
    notes = report["notes"]
    if notes:
        lines += ["", "Notes:"] + [f"  {note}" for note in notes]
    return "\n".join(line.rstrip() for line in lines)


def progress_line(row: dict[str, Any], loops: list[str]) -> str:
    """A one-line summary of a finished workload, for progress output."""
    unit, scale, is_rate = _row_unit(row)
    parts = [f"{k} {_cell(row, k, scale, is_rate).strip() or '-'}" for k in loops]
    return f"{row['name']} (size {row['size']:,}, {unit}): " + " | ".join(parts)


# ---- JSON -------------------------------------------------------------------------


def row_skeleton(wl: Workload, size: int, ops: int) -> dict[str, Any]:
    """The JSON row of a workload, before any loop has run it."""
    return {
        "name": wl.name,
        "description": wl.description,
        "group": wl.group,
        "kind": wl.kind,
        "unit": wl.unit,
        "display": wl.display,
        "size": size,
        "ops": ops,
        "baseline": wl.baseline,
        "loops": {},
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    """Write *report* to *path* (creating its directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
