"""The one table: a row per scenario (sub-rows for its targets)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runner import Row

HEAD = ("scenario", "throughput", "p50 ms", "p99 ms", "CPU s/1k runs", "peak MiB gw/runs/jobs/dev/auth",
        "target", "measured", "✓/✗")
ORDER = ("gateway", "runs", "jobs", "devices", "auth")


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}" if abs(value) < 100 else f"{value:,.0f}"


def table(rows: list["Row"]) -> str:
    lines: list[tuple[str, ...]] = []
    for row in rows:
        if row.status != "ok":
            first = (row.scenario, row.status, "–", "–", "–", "–", "", row.note[:90], "")
            lines.append(first)
            for check in row.checks:
                lines.append(("", "", "", "", "", "", check.target, check.measured, "–"))
            continue
        throughput = "–" if row.throughput is None else f"{_num(row.throughput, 1)} {row.unit}"
        peak = "/".join(f"{row.peak_mib.get(name, 0):.0f}" for name in ORDER) if row.peak_mib else "–"
        figures = (row.scenario, throughput, _num(row.p50_ms, 2), _num(row.p99_ms, 2),
                   _num(row.cpu_s_per_1k_runs, 2), peak)
        checks = row.checks or []
        if not checks:
            lines.append((*figures, "", row.note[:90], ""))
        for i, check in enumerate(checks):
            mark = "–" if check.ok is None else ("✓" if check.ok else "✗")
            lines.append((*(figures if i == 0 else ("",) * 6), check.target, check.measured, mark))
    widths = [max(len(line[i]) for line in [HEAD, *lines]) for i in range(len(HEAD))]
    rule = "+".join("-" * (w + 2) for w in widths)

    def fmt(line: tuple[str, ...]) -> str:
        return "|".join(f" {cell:<{widths[i]}} " for i, cell in enumerate(line))

    return "\n".join([fmt(HEAD), rule, *(fmt(line) for line in lines)])
