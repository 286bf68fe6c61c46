"""The chaos run: N activations under every fault at once; count what was lost.

The sandbox (its own process) drops connections before requests and after purchases,
answers 503 ``PROVIDER_ERROR`` and proxy-style HTML 502s, rate-limits, and adds
latency; 10 % of orders never get a code. A child process runs N
``client.orders.activation()`` blocks, each waiting for its code with a timeout. The
parent then reads the sandbox's ledger and counts:

* double charges: orders the sandbox created and charged that no activation held;
* lost codes: orders that received a code which was not returned to their caller;
* orders left ``PENDING`` once the client is closed;
* unrefunded: orders that ended without a code and were not refunded.

The faults mirror ``tests/test_chaos.py``, and so does the client's
``reconcile_window=2``: the sandbox has no slow purchases here, so a lost purchase that
bought nothing may be bought again after 2 s. With the default window (60 s, a proxy's
timeout) every connection dropped before a purchase reached the application would hold
that activation for a minute, and the run would overrun its 60 s deadline ("hung",
with the lost purchases queued for reconciliation).
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from ._common import Json, progress, run_child, running_sandbox

FAULTS: Json = {
    "drop_before_rate": 0.05,
    "drop_after_purchase_rate": 0.05,
    "provider_error_rate": 0.05,
    "html_502_rate": 0.02,
    "latency": [0.0, 0.05],
    "rate_limit": 400,
}


@dataclasses.dataclass
class ChaosResult:
    """What the ledger says after the run."""

    n: int
    requests: int
    faults_seen: dict[str, int]
    orders: int
    codes_returned: int
    no_code_errors: int
    other_errors: int
    error_samples: list[str]
    double_charges: int
    lost_codes: int
    left_pending: int
    unrefunded: int
    balanced: bool
    wall_s: float
    #: The client's state if the run overran its deadline (None: it finished).
    hung: Json | None

    @property
    def clean(self) -> bool:
        return (
            self.double_charges == 0
            and self.lost_codes == 0
            and self.left_pending == 0
            and self.unrefunded == 0
            and self.balanced
            and self.hung is None
        )

    def to_dict(self) -> Json:
        data = dataclasses.asdict(self)
        data["clean"] = self.clean
        return data


async def run_chaos(seed: int, n: int, *, speed: float = 1.0) -> ChaosResult:
    """Start a faulty sandbox, run the activations in a child, audit the ledger.

    ``speed`` divides the code delays, the poll interval and the activations' timeout.
    """
    progress(f"chaos: {n:,} activations under faults")
    async with running_sandbox(
        seed,
        code_delay=(0.3 / speed, 2.5 / speed),
        auto_deliver=True,
        balance="1000",
        no_code_ratio=0.1,
    ) as sb:
        await sb.post("faults", FAULTS)
        await sb.post("stats/reset")
        data = await run_child(
            "chaos",
            {
                "base_url": sb.base_url,
                "api_key": sb.api_key,
                "n": n,
                "interval": 0.25 / speed,
                "timeout": 4.0 / speed,
                "deadline": 60,
            },
        )
        await sb.post("faults/reset")
        stats = await sb.stats()
        ledger = await sb.get("ledger")
    records = {o["id"]: o for o in ledger["orders"]}
    owners: set[str] = set(data["owners"])
    returned: dict[str, str] = data["returned"]
    refunds: dict[str, object] = ledger["refunds_by_order"]
    lost = unrefunded = 0
    for order_id, record in records.items():
        if record["status"] == "RECEIVED":
            lost += returned.get(order_id) != record["sms_code"]
        elif record["status"] != "PENDING":
            refunded = refunds.get(order_id)
            unrefunded += refunded is None or Decimal(str(refunded)) != Decimal(
                str(record["price"])
            )
    by_status: dict[str, int] = ledger["orders_by_status"]
    codes = stats["by_status"]
    return ChaosResult(
        n=n,
        requests=int(stats["total"]),
        faults_seen={
            "dropped": int(stats["dropped"]),
            "503": int(codes.get("503", 0)),
            "502": int(codes.get("502", 0)),
            "429": int(codes.get("429", 0)),
        },
        orders=len(records),
        codes_returned=len(returned),
        no_code_errors=int(data["no_code_errors"]),
        other_errors=int(data["other_errors"]),
        error_samples=list(data["error_samples"]),
        double_charges=len(set(records) - owners),
        lost_codes=lost,
        left_pending=int(by_status.get("PENDING", 0)),
        unrefunded=unrefunded,
        balanced=bool(ledger["balanced"]),
        wall_s=float(data["wall_s"]),
        hung=data["hung"],
    )


def chaos_line(result: ChaosResult) -> str:
    """One paragraph describing the run."""
    f = result.faults_seen
    return (
        f"Chaos: {result.n:,} activations, {result.requests:,} requests "
        f"({f['dropped']} dropped, {f['503']} 503, {f['502']} 502, {f['429']} 429); "
        f"{result.orders:,} orders, {result.codes_returned:,} codes returned, "
        f"{result.no_code_errors} no-code (refunded), {result.other_errors} other errors; "
        f"double charges {result.double_charges}, lost codes {result.lost_codes}, "
        f"left PENDING {result.left_pending}, unrefunded {result.unrefunded}, "
        f"ledger {'balanced' if result.balanced else 'NOT balanced'}; {result.wall_s:.1f} s."
    )


# -- the child -------------------------------------------------------------------------


async def child(config: Json) -> Json:
    """Run the activations; report which orders each held and what codes came back."""
    import anyio

    import gsim_async

    from ._common import Clock

    owners: list[str] = []
    returned: dict[str, str] = {}
    no_code: list[str] = []
    other: list[str] = []
    clock = Clock()
    async with gsim_async.Client(
        config["api_key"],
        base_url=config["base_url"],
        poll_interval=config["interval"],
        max_retries=10,
        backoff_base=0.05,
        backoff_cap=0.5,
        max_retry_after=1,
        connection_limit=64,
        # No slow purchases here: a lost one that bought nothing is bought again soon.
        reconcile_window=2,
    ) as gsim:

        async def activate() -> None:
            try:
                async with gsim.orders.activation("telegram", "russia") as act:
                    owners.append(act.order.id)
                    returned[act.order.id] = await act.wait_for_code(timeout=config["timeout"])
            except gsim_async.NoCodeError as exc:
                no_code.append(repr(exc))
            except gsim_async.GsimError as exc:
                other.append(repr(exc))

        hung: Json | None = None
        with anyio.move_on_after(config["deadline"]) as scope:
            async with anyio.create_task_group() as tg:
                for _ in range(config["n"]):
                    tg.start_soon(activate)
        if scope.cancelled_caught:
            hung = _diagnose(gsim)
    return {
        "hung": hung,
        "owners": owners,
        "returned": returned,
        "no_code_errors": len(no_code),
        "other_errors": len(other),
        "error_samples": other[:3],
        "wall_s": clock.wall(),
    }


def _diagnose(gsim: Any) -> Json:
    """What the client was doing when the run overran its deadline (private state)."""
    book = gsim._orders_book.reconciler
    pacing = gsim._transport.pacing
    return {
        "purchase_keys": {
            "/".join(key): {
                "in_flight": state.in_flight,
                "queued_reconciliations": len(state.pending),
                "leader": state.leader,
            }
            for key, state in book._keys.items()
        },
        "gate_closed_for_s": pacing.paused_for,
        "rate": pacing.rate,
        "pacing_phase": pacing.phase.value,
        "watching": gsim.orders.waiting,
        "requests_sent": gsim.requests_sent,
    }
