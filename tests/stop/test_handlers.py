"""Who handles SIGTERM: ``gsim_async.run()`` and ``SyncClient`` never override a
handler the program installed, install theirs only from the main thread, and put the
default back when they are done.

These run in the test process (its main thread, SIGTERM at its default); a real
SIGTERM to this process is handled by ``run()``'s own handler, in-process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal
from types import FrameType

import pytest
from served import ThreadedSandbox, until

import gsim_async
from gsim_async import ClientClosedError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(autouse=True)
def default_dispositions() -> Iterator[None]:
    """Each test starts from the dispositions nobody chose, and leaves them so."""
    saved = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved[0])
        signal.signal(signal.SIGINT, saved[1])


def mine(signum: int, frame: FrameType | None) -> None:
    """A program's own SIGTERM handler."""


def test_a_sync_client_made_in_the_main_thread_handles_sigterm_until_the_last_closes(
    sandbox: ThreadedSandbox,
) -> None:
    first = sandbox.client()
    handler = signal.getsignal(signal.SIGTERM)
    assert callable(handler) and handler.__name__ == "_on_sigterm"
    second = sandbox.client()
    first.close()
    assert signal.getsignal(signal.SIGTERM) is handler  # the second is still open
    second.close()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_sync_client_never_overrides_the_programs_handler(sandbox: ThreadedSandbox) -> None:
    signal.signal(signal.SIGTERM, mine)
    with sandbox.client():
        assert signal.getsignal(signal.SIGTERM) is mine
    assert signal.getsignal(signal.SIGTERM) is mine


def test_a_sync_client_leaves_a_handler_installed_after_it_alone(
    sandbox: ThreadedSandbox,
) -> None:
    with sandbox.client():
        signal.signal(signal.SIGTERM, mine)  # the program takes SIGTERM over
    assert signal.getsignal(signal.SIGTERM) is mine  # not put back over the program's


def test_a_sync_client_made_in_another_thread_installs_nothing(
    sandbox: ThreadedSandbox,
) -> None:
    made: list[gsim_async.SyncClient] = []
    thread = threading.Thread(target=lambda: made.append(sandbox.client()))
    thread.start()
    thread.join(10)
    try:
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        made[0].close()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_sync_client_stop_gives_a_wait_in_another_thread_up(sandbox: ThreadedSandbox) -> None:
    with sandbox.client() as gsim:
        order = gsim.orders.create("telegram", "russia")
        errors: list[ClientClosedError] = []

        def wait() -> None:
            with pytest.raises(ClientClosedError) as info:
                gsim.orders.wait_for_code(order, timeout=60, on_timeout="cancel")
            errors.append(info.value)

        thread = threading.Thread(target=wait)
        thread.start()
        until(lambda: gsim.orders.waiting == 1, "the wait")
        gsim.stop()
        thread.join(10)
        with pytest.raises(ClientClosedError, match="stopping"):
            gsim.orders.create("telegram", "russia")
    assert errors[0].refunded == order.price
    assert sandbox.order(order.id).status == "CANCELLED"


# -- gsim_async.run() -------------------------------------------------------------------------


def test_run_returns_what_main_returns_and_puts_the_handlers_back() -> None:
    seen: list[object] = []

    async def main() -> int:
        seen.append(signal.getsignal(signal.SIGTERM))
        seen.append(signal.getsignal(signal.SIGINT))
        return 7

    assert gsim_async.run(main()) == 7
    assert all(callable(h) and getattr(h, "__name__", "") == "_on_signal" for h in seen), seen
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_run_keeps_a_handler_the_program_installed() -> None:
    signal.signal(signal.SIGTERM, mine)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # started as a background job

    async def main() -> tuple[object, object]:
        return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    assert gsim_async.run(main()) == (mine, signal.SIG_IGN)
    assert signal.getsignal(signal.SIGTERM) is mine


def test_run_refuses_what_asyncio_run_refuses() -> None:
    with pytest.raises(TypeError, match="coroutine"):
        gsim_async.run(lambda: None)  # type: ignore[arg-type]

    async def inner() -> None:
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="running event loop"):
            gsim_async.run(coro)

    asyncio.run(inner())
    with pytest.raises(gsim_async.InvalidArgumentError):
        gsim_async.run(asyncio.sleep(0), grace=-1)


def test_sigterm_under_run_stops_the_clients_cancels_main_and_exits_143(
    sandbox: ThreadedSandbox,
) -> None:
    order_ids: list[str] = []
    cancelled: list[bool] = []

    async def main() -> None:
        async with gsim_async.Client(
            sandbox.api_key, base_url=sandbox.base_url, poll_interval=0.05
        ) as gsim:
            order = await gsim.orders.create("telegram", "russia")
            order_ids.append(order.id)
            loop = asyncio.get_running_loop()
            loop.call_later(0.3, os.kill, os.getpid(), signal.SIGTERM)
            try:
                await gsim.orders.wait_for_code(order, timeout=60)
            except asyncio.CancelledError:
                cancelled.append(True)
                raise

    with pytest.raises(SystemExit) as info:
        gsim_async.run(main())
    assert info.value.code == 143
    assert cancelled == [True]
    assert sandbox.order(order_ids[0]).status == "BANNED"
    assert sandbox.ledger().balance == Decimal("100")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_ctrl_c_under_run_does_the_same_and_raises_keyboard_interrupt(
    sandbox: ThreadedSandbox,
) -> None:
    order_ids: list[str] = []

    async def main() -> None:
        async with (
            gsim_async.Client(
                sandbox.api_key, base_url=sandbox.base_url, poll_interval=0.05
            ) as gsim,
            gsim.orders.activation("telegram", "russia") as act,
        ):
            order_ids.append(act.order.id)
            asyncio.get_running_loop().call_later(0.3, os.kill, os.getpid(), signal.SIGINT)
            await act.wait_for_code(timeout=60)

    with pytest.raises(KeyboardInterrupt):
        gsim_async.run(main())
    assert sandbox.order(order_ids[0]).status == "CANCELLED"
    assert sandbox.ledger().balance == Decimal("100")


def test_run_closes_the_clients_main_left_open(sandbox: ThreadedSandbox) -> None:
    kept: list[gsim_async.Client] = []
    blocks: list[gsim_async.Activation] = []

    async def main() -> str:
        gsim = gsim_async.Client(sandbox.api_key, base_url=sandbox.base_url, poll_interval=0.05)
        kept.append(gsim)
        act = gsim.orders.activation("telegram", "russia")
        blocks.append(act)
        await act.__aenter__()  # a block never left: its number is refunded on close
        return act.order.id

    order_id = gsim_async.run(main())
    assert kept[0].closed
    assert sandbox.order(order_id).status == "CANCELLED"
