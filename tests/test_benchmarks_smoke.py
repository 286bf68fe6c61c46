"""The benchmark suite still runs end to end (tiniest configuration; no timing checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis_server import need_redis

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


# -- the soak's smoke (issue 23): every fault, judged on the ledger ---------------------

#: Orders left charged by two fleet defects the soak found (see the report's "Orders left
#: charged" line and its Redis probe table): after Redis restarts empty, the per-member
#: counts of purchases on the wire go below zero and another buyer is flagged for an
#: hour, so a dead member's purchase on the wire "cannot be told"; and a recovered
#: purchase adopted early is refunded only once every other of its key is resolved.
FLEET_DEFECTS = (
    "a killed member's purchase on the wire at its death",
    "named by an OutcomeUnknownError raised to a loop (its answer was lost)",
    "named by 'an earlier run's purchase cannot be told'",
    # A stopped loop's purchase whose answer was lost: the same unknown outcome, raised
    # to nobody (its caller was gone).
    "bought after the loops stopped (a stopped loop's purchase; nobody named it)",
)


def test_soak_smoke_runs_every_fault_and_loses_no_money(tmp_path: Path) -> None:
    """``python -m benchmarks.soak --smoke --file-journals``: 4 fleet members for 75 s on
    a Sentinel group, a member SIGKILLed every 15 s and started again on its journal
    file, Redis restarted empty, a member stalled 6 s, a Sentinel failover (two minutes).
    """
    need_redis()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.soak", "--smoke", "--file-journals",
         "--json", "soak.json"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert (tmp_path / "soak.json").exists(), done.stderr[-3000:]
    report = json.loads((tmp_path / "soak.json").read_text())
    assert "| soak (design.md, issue 23) |" in done.stdout, done.stderr[-3000:]

    # Every fault ran: a member killed every 15 s and started again; Redis restarted
    # empty (the Sentinels did not fail over), then a failover; one member stalled,
    # chosen among those not killed afterwards.
    assert sum(1 for m in report["members"] if m["killed"]) == 4
    assert len(report["members"]) == 8
    wipe, failover = report["redis_events"]
    assert wipe["event"] == "wipe" and wipe["came_back_empty"] is True
    assert wipe["failed_over"] is False and wipe["replica_linked"] is True
    assert failover["event"] == "failover" and failover["promoted"] is not None
    stall = report["stall"]
    assert stall["stall_s"] == pytest.approx(6.0, abs=1.0)
    assert not next(m for m in report["members"] if m["member"] == stall["member"])["killed"]

    # No money or code lost: nothing charged twice, every code returned is the ledger's,
    # the stalled member (6 s < dead_after) got every code and lost nothing behind its
    # back, and the dead members' orders were refunded (how soon is the full soak's to
    # judge: speed lives in benchmarks, never in a test's timed assertion).
    audit = report["audit"]
    assert audit["double_charges"] == 0
    assert not audit["wrong_codes"] and not audit["ended_unrefunded"] and audit["balanced"]
    assert stall["codes_delivered"] > 0
    assert stall["codes_returned"] == stall["codes_delivered"], stall
    assert stall["behind_its_back"] == 0, stall
    deaths = audit["refunds_after_death"]
    assert deaths["count"] > 0, deaths

    # Orders left charged: none but those of the known fleet defects (an expected
    # failure until they are fixed; anything else fails).
    why = audit["left_charged_why"]
    others = {i: w for i, w in why.items() if w not in FLEET_DEFECTS}
    assert not others, (others, done.stdout[-4000:])
    if why:
        pytest.xfail(f"{len(why)} order(s) left charged by the fleet defects: {why}")
    assert done.returncode == 0, done.stdout[-4000:]
