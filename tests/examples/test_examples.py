"""The examples work: the bot (its aiogram side included), the bulk verifier, the tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import telegram_bot
import verify_many
from aiogram import Bot, Dispatcher
from aiogram.client.session.base import BaseSession
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import Chat, Message, Update, User
from arq_env import ArqEnv
from redis_server import RedisServer
from services import threaded_sandbox

import gsim_async
from gsim_async.pytest_plugin import GsimSandbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: Where gsim_async is imported from: this checkout, or an installed wheel's site-packages.
PACKAGE_HOME = Path(gsim_async.__file__).resolve().parent.parent
pytestmark = pytest.mark.anyio


def test_the_example_test_file_passes() -> None:
    result = subprocess.run(  # noqa: S603 (our own interpreter and file)
        [sys.executable, "-m", "pytest", "-q", str(EXAMPLES / "test_my_bot.py")],
        cwd=EXAMPLES, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(PACKAGE_HOME)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


class FakeTelegram(BaseSession):
    """A Bot API session that records what the bot sends instead of calling Telegram."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    async def make_request(
        self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None
    ) -> Any:
        assert isinstance(method, SendMessage)
        self.sent.append(method.text)
        chat = Chat(id=int(method.chat_id), type="private")
        return Message(message_id=len(self.sent), date=datetime.now(timezone.utc), chat=chat)

    async def stream_content(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        pass


def update(text: str, user_id: int = 42) -> Update:
    user = User(id=user_id, is_bot=False, first_name="Ada")
    message = Message(
        message_id=1,
        date=datetime.now(timezone.utc),
        chat=Chat(id=user_id, type="private"),
        from_user=user,
        text=text,
    )
    return Update(update_id=1, message=message)


async def test_the_bot_answers_number_with_a_number_then_its_code(
    gsim_sandbox: GsimSandbox,
) -> None:
    telegram = FakeTelegram()
    bot = Bot("123456:" + "A" * 35, session=telegram)
    # Handlers get the desk by name from the dispatcher's workflow data.
    dispatcher = Dispatcher(desk=telegram_bot.NumberDesk(gsim_sandbox.client))
    dispatcher.include_router(telegram_bot.make_router())

    await dispatcher.feed_update(bot, update("/start"))
    await dispatcher.feed_update(bot, update("/number whatsapp india"))

    start, number, code = telegram.sent
    assert start.startswith("Send /number")
    assert number.startswith("Your number: +91")
    order = gsim_sandbox.sandbox.orders()[0]
    assert (order.service, order.country) == ("whatsapp", "india")
    assert code == f"Your code: {order.sms_code}"


@pytest.mark.gsim_sandbox(auto_deliver=False)
async def test_one_number_at_a_time_per_user_and_refund_on_shutdown(
    gsim_sandbox: GsimSandbox,
) -> None:
    desk = telegram_bot.NumberDesk(gsim_sandbox.client)
    said: list[str] = []
    replied = asyncio.Event()

    async def reply(text: str) -> None:
        said.append(text)
        replied.set()

    first = asyncio.ensure_future(desk.hand_out(7, reply))
    await replied.wait()
    assert await desk.hand_out(7, reply) is None
    assert said[-1] == "You already have a number waiting for its code."

    await desk.close()  # what the bot does when it stops: the waiting number is refunded
    assert await first is None
    assert said[-1].startswith("The bot is restarting: your number was refunded.")
    await gsim_sandbox.client.aclose()  # the refund has landed
    ledger = gsim_sandbox.ledger()
    assert ledger.charged == ledger.refunded > 0


@pytest.mark.gsim_sandbox(code_delay=(0.05, 0.3), no_code_ratio=0.1, seed=11)
async def test_verify_many_signs_up_what_got_a_code_and_refunds_the_rest(
    gsim_sandbox: GsimSandbox,
) -> None:
    done = await verify_many.verify_all(gsim_sandbox.client, "telegram", "russia", 100, timeout=1.0)
    assert done["verified"] + done["refunded"] == 100
    assert done["refunded"] > 0
    ledger = gsim_sandbox.ledger()
    assert ledger.orders_by_status == {"RECEIVED": done["verified"], "BANNED": done["refunded"]}
    assert ledger.refunded == sum(o.price for o in ledger.orders if o.status == "BANNED")
    # One watcher for all: far fewer requests than one poll loop per order would need.
    assert gsim_sandbox.client.requests_sent < 300


@pytest.mark.gsim_sandbox(auto_deliver=False)
async def test_verify_many_refunds_what_is_still_waiting_when_interrupted(
    gsim_sandbox: GsimSandbox,
) -> None:
    run = asyncio.ensure_future(
        verify_many.verify_all(gsim_sandbox.client, "telegram", "russia", 10, timeout=60)
    )
    while len(gsim_sandbox.sandbox.orders()) < 10:  # noqa: ASYNC110 (no event to wait on)
        await asyncio.sleep(0.01)
    gsim_sandbox.deliver_code(gsim_sandbox.sandbox.orders()[0].id)
    await asyncio.sleep(0.2)  # that code is seen
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    ledger = gsim_sandbox.ledger()
    assert ledger.orders_by_status == {"RECEIVED": 1, "CANCELLED": 9}
    assert ledger.refunded == 9 * ledger.orders[0].price


def test_arq_jobs_share_one_fleet_client(redis_server: RedisServer, arq_env: ArqEnv) -> None:
    # Two workers' start-ups and six jobs in one process of the arq environment (arq pins
    # redis-py below 6, which this one does not have): tests/examples/arq_jobs.py.
    with threaded_sandbox(seed=3, code_delay=(0.05, 0.2), auto_deliver=True) as sb:
        results = arq_env.run(
            "arq_jobs.py",
            env={**sb.env(), "GSIM_FLEET_URL": redis_server.url, "POLL_INTERVAL": "0.1"},
        )
        assert all(r["code"] for r in results)
        assert len({r["number"] for r in results}) == 6
        assert len(sb.ledger().charges_by_order) == 6
