"""A script the tests interrupt with a real SIGINT: ``python interrupted.py MODE URL KEY``.

It prints ``ready <order ids>`` once it waits, and after the ``KeyboardInterrupt`` (if
the process is still alive) ``interrupted <json>``: what the server says of the
orders *as the exception leaves*, so a refund that came later would show as missing.
Modes: ``activation``, ``ban`` / ``cancel`` / ``keep`` (``orders.wait_for_code``
with that ``on_timeout``), ``as_completed``, ``twice`` (an activation whose refund
is slow: the test presses Ctrl-C twice) and ``purchase`` (Ctrl-C while buying).
"""

from __future__ import annotations

import json
import signal
import sys

from gsim_async import SyncClient


def main(mode: str, url: str, key: str) -> int:
    with SyncClient(key, base_url=url, poll_interval=0.05, backoff_base=0) as gsim:
        ids: list[str] = []
        refunded = None
        try:
            if mode in ("activation", "twice"):
                with gsim.orders.activation("telegram", "russia") as act:
                    ids.append(act.order.id)
                    print("ready", act.order.id, flush=True)
                    try:
                        act.wait_for_code(timeout=600)
                    finally:
                        refunded = act  # read once the block is left
            elif mode in ("ban", "cancel", "keep"):
                order = gsim.orders.create("telegram", "russia")
                ids.append(order.id)
                print("ready", order.id, flush=True)
                gsim.orders.wait_for_code(order, timeout=600, on_timeout=mode)
            elif mode == "as_completed":
                orders = [gsim.orders.create("telegram", "russia") for _ in range(3)]
                ids.extend(o.id for o in orders)
                print("ready", *ids, flush=True)
                for _ in gsim.orders.as_completed(orders, timeout=600):
                    pass
            elif mode == "purchase":
                print("ready", flush=True)
                gsim.orders.create("telegram", "russia")
        except KeyboardInterrupt:
            if mode == "twice":
                print("interrupted", json.dumps({}), flush=True)
                return 130
            if mode == "purchase":  # what the purchase bought, as the exception leaves
                ids = [o.id for o in gsim.orders.iterate()]
            seen = {
                "statuses": {i: str(gsim.orders.get(i).status) for i in ids},
                "refunded": None if refunded is None else str(refunded.refunded),
            }
            print("interrupted", json.dumps(seen), flush=True)
            return 130
    return 0


if __name__ == "__main__":
    # The test interrupts this script with SIGINT: it relies on Python's Ctrl-C handler,
    # whatever its parent left (a background job starts with SIGINT ignored, and a
    # Python started with SIGINT ignored keeps it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main(*sys.argv[1:4]))
