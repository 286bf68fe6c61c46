"""Testing your own code with the ``gsim_sandbox`` fixture: no money, no Telegram.

The fixture comes with gsim-async (a pytest plugin): ask for it in an async test and
you get ``.client``, a Client of a sandbox running for this test, and ``.sandbox`` to
steer it. Run: ``python -m pytest examples/test_my_bot.py``.
"""

from __future__ import annotations

import pytest
from telegram_bot import NumberDesk

from gsim_async.pytest_plugin import GsimSandbox

pytestmark = pytest.mark.anyio  # or pytest.mark.asyncio, with pytest-asyncio


class Chat:
    """Collects what the bot says, in place of Telegram."""

    def __init__(self) -> None:
        self.said: list[str] = []

    async def reply(self, text: str) -> None:
        self.said.append(text)


async def test_hands_out_a_number_then_its_code(gsim_sandbox: GsimSandbox) -> None:
    chat = Chat()
    code = await NumberDesk(gsim_sandbox.client).hand_out(1, chat.reply)
    assert code is not None
    assert chat.said[0].startswith("Your number: +7")
    assert chat.said[1] == f"Your code: {code}"


@pytest.mark.gsim_sandbox(auto_deliver=False)  # codes arrive only when the test says so
async def test_refunds_when_no_code_comes(gsim_sandbox: GsimSandbox) -> None:
    chat = Chat()
    assert await NumberDesk(gsim_sandbox.client, timeout=0.5).hand_out(1, chat.reply) is None
    assert "refunded" in chat.said[-1]
    ledger = gsim_sandbox.ledger()
    assert ledger.refunded == ledger.charged > 0  # every cent came back


@pytest.mark.gsim_sandbox(balance="0.05")
async def test_says_so_when_the_balance_is_empty(gsim_sandbox: GsimSandbox) -> None:
    chat = Chat()
    assert await NumberDesk(gsim_sandbox.client).hand_out(1, chat.reply) is None
    assert chat.said == ["The bot is out of credit right now; try again later."]
