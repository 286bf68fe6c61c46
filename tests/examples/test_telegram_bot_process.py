"""examples/telegram_bot.py run as its users run it: ``python telegram_bot.py``.

The bot polls a Bot API stand-in on 127.0.0.1 and buys from the sandbox; both serve
from one thread of this process. One bot process serves the module's tests (the last
one stops it with SIGTERM, as ``docker stop`` does).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator

import pytest
from services import (
    Service,
    ThreadedSandbox,
    assert_nothing_left_charged,
    python,
    threaded_sandbox,
    until,
)
from telegram_stand_in import TelegramStandIn

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="stops a process with SIGTERM")

TOKEN = "123456:" + "A" * 35


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ThreadedSandbox]:
    with threaded_sandbox(seed=21) as sb:
        yield sb


@pytest.fixture(scope="module")
def telegram(sandbox: ThreadedSandbox) -> Iterator[TelegramStandIn]:
    stand_in = TelegramStandIn()
    sandbox.call(stand_in.start)
    yield stand_in
    sandbox.call(stand_in.close)


@pytest.fixture(scope="module")
def bot(sandbox: ThreadedSandbox, telegram: TelegramStandIn) -> Iterator[Service]:
    service = Service(
        python("telegram_bot.py"),
        env={
            **sandbox.env(),
            "BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": telegram.base_url,
            "POLL_INTERVAL": "0.1",
        },
        ready="Run polling for bot @numbers_bot",
        name="telegram-bot",
    )
    yield service
    service.close()


def said(sandbox: ThreadedSandbox, telegram: TelegramStandIn, user: int, count: int) -> list[str]:
    """Once the bot has said ``count`` things to ``user``: what it said."""
    until(lambda: len(sandbox.call(telegram.said_to, user)) >= count, f"{count} replies to {user}")
    return sandbox.call(telegram.said_to, user)


def test_the_bot_hands_out_a_number_then_its_code(
    sandbox: ThreadedSandbox, telegram: TelegramStandIn, bot: Service
) -> None:
    bot.running()
    sandbox.call(telegram.send, 1, "/number whatsapp india")
    (number,) = said(sandbox, telegram, 1, 1)
    assert number.startswith("Your number: +91"), bot.log()
    (order,) = [o for o in sandbox.pending() if o.phone_number in number]
    code = sandbox.deliver_code(order.id)
    assert said(sandbox, telegram, 1, 2)[1] == f"Your code: {code}"


def test_sigterm_refunds_every_number_still_waiting_and_tells_its_user(
    sandbox: ThreadedSandbox, telegram: TelegramStandIn, bot: Service
) -> None:
    bot.running()
    users = [11, 12, 13]
    for user in users:
        sandbox.call(telegram.send, user, "/number")
    for user in users:
        assert said(sandbox, telegram, user, 1)[0].startswith("Your number: +7")
    waiting = sandbox.wait_for_pending(3)

    status, seconds = bot.stop(signal.SIGTERM)

    assert status == 0, bot.log()
    assert seconds < 10
    ledger = sandbox.ledger()
    assert {o.id: o.status for o in ledger.orders if o.id in {w.id for w in waiting}} == {
        w.id: "CANCELLED" for w in waiting
    }
    assert_nothing_left_charged(ledger)
    for user in users:
        assert said(sandbox, telegram, user, 2)[1].startswith("The bot is restarting: your number")
