"""The benchmark suite's own smoke test: one tiny scenario through the same code path as `make bench`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_rest_trigger_for_two_seconds_prints_the_table_and_writes_the_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "rest-trigger", "--duration", "2", "--clients", "4",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={"JOBLINE_BENCH_POSTGRES_URL": "",
                                                                   **_env()},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 REST trigger" in done.stdout and "≥ 1,500 runs/s" in done.stdout, done.stdout
    assert "REST trigger:" in done.stderr  # progress while it ran
    figures = json.loads(out.read_text())
    [row] = figures["rows"]
    assert row["scenario"] == "1 REST trigger" and row["status"] == "ok"
    assert row["runs"] > 0 and row["throughput"] > 0 and row["p50_ms"] <= row["p99_ms"]
    assert set(row["peak_mib"]) == {"gateway", "runs", "jobs", "devices", "auth"}
    assert row["cpu_s_per_1k_runs"] > 0
    assert figures["machine"]["nproc"] >= 1 and figures["table"]


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("JOBLINE_BENCH_POSTGRES_URL", None)
    return env
