"""The benchmark suite still runs end to end (tiniest configuration; no timing checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_suite_runs_every_scenario_and_reports_every_target(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json", "bench.json"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| target (design.md) |" in result.stdout
    report = json.loads((tmp_path / "bench.json").read_text())
    # Every design.md target has a measured figure.
    assert len(report["targets"]) == 22
    assert all(row["verdict"] != "not measured" for row in report["targets"])
    # Every contender got every code, each its own.
    for row in report["scale"] + report["rate_limit"] + report["activations"]:
        assert row["codes"] == row["n"], row
        assert row["wrong_codes"] == 0 and row["errors"] == 0
    assert [r["variant"] for r in report["activations"]] == [
        "unknown",
        "told",
        "headers-x",
        "headers-ietf",
    ]
    assert {c["case"] for c in report["slow_get"]} == {"few", "many"}
    for case in report["slow_get"]:
        assert case["slow"]["delays"] and case["baseline"]["delays"], case
        assert case["slow"]["errors"] == 0
    assert [r["name"] for r in report["steady"]] == ["retry-after-60", "retry-after-1"]
    assert all(r["sdk"]["used"] is not None for r in report["steady"])
    assert {r["contender"] for r in report["scale"]} == {
        "sdk_wait",
        "sdk_per_order",
        "sdk_as_completed",
        "naive",
    }
    assert report["overhead"]["ratio"] is not None
    assert report["memory"]["per_wait"] is not None
    assert report["chaos"]["clean"]
    sync = report["sync"]
    assert [w["contender"] for w in sync["waits"]] == ["async", "sync", "sync_per_thread"]
    for run in sync["waits"]:
        assert run["codes"] == run["wanted"] and run["wrong_codes"] == 0 and run["errors"] == 0
    assert sync["requests_ratio"] is not None and sync["cpu"]["paired_ratio"] is not None
    assert report["throughput"]
    # The journal's cost: each variant's every code, every burst's every purchase, and
    # nothing left open in the journal once its client closed.
    journal = report["journal"]
    assert {(r["workload"], r["variant"]) for r in journal["runs"]} == {
        (w, v) for w in ("activations", "waits") for v in ("none", "journal")
    }
    for run in journal["runs"]:
        assert run["codes"] == run["n"] and run["errors"] == 0 and run["wrong_codes"] == 0
        assert run["open_rows"] == (0 if run["variant"] == "journal" else None)
    assert all(b["purchases"] == b["n"] for b in journal["bursts"])
    # Telemetry's cost: every variant measured, every code of every run.
    tel = report["telemetry"]
    assert set(tel["cpu_per_request_us"]) == {"bare", "absent", "off", "noop", "sdk"}
    assert all(v is not None for v in tel["cpu_per_request_us"].values())
    assert tel["hooks_us"]["off"] is not None and tel["hooks_us"]["sdk"] is not None
    assert [r["variant"] for r in tel["code_runs"]] == ["absent", "off", "noop", "sdk"]
    for run in tel["code_runs"]:
        assert run["codes"] == run["n"] and run["errors"] == 0 and run["wrong_codes"] == 0
    assert tel["code_runs"][-1]["spans"] > 0
