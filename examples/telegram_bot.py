"""A Telegram bot (aiogram 3) that hands a user a phone number, then its SMS code.

The user sends ``/number [service] [country]``; the bot buys a number, replies with
it at once, and replies again with the code when it arrives. A number whose code
does not come in time is banned and refunded, and so is one the bot is stopped
while waiting for (Ctrl-C): ``orders.activation()`` sees to both.

Usage::

    pip install 'gsim-async' 'aiogram>=3.4'
    BOT_TOKEN=123456:ABC... python examples/telegram_bot.py

With ``GSIM_API_KEY`` set it buys real numbers; without, it uses the embedded
sandbox (no money), whose codes arrive after a few seconds.

The bot's logic is :class:`NumberDesk`, plain async code that knows nothing of
Telegram: it talks back through a ``reply(text)`` callable. That is what
``examples/test_my_bot.py`` tests against the sandbox, without Telegram.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from decimal import Decimal

from aiogram import Bot, Dispatcher, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message

import gsim_async

#: Sends one text message back to the user.
Reply = Callable[[str], Awaitable[object]]

log = logging.getLogger("number_bot")


class NumberDesk:
    """Hands out numbers and codes; one number at a time per user."""

    def __init__(
        self,
        gsim: gsim_async.Client,
        *,
        timeout: float = 300,
        max_price: Decimal | str | None = "0.50",
    ) -> None:
        self.gsim = gsim
        self.timeout = timeout
        self.max_price = max_price
        self._busy: set[int] = set()
        self._tasks: set[asyncio.Task[object]] = set()

    async def hand_out(
        self, user_id: int, reply: Reply, service: str = "telegram", country: str = "russia"
    ) -> str | None:
        """Buy a number for ``user_id``, reply with it, then with its code; return the code."""
        if user_id in self._busy:
            await reply("You already have a number waiting for its code.")
            return None
        task = asyncio.current_task()
        assert task is not None
        self._busy.add(user_id)
        self._tasks.add(task)
        try:
            return await self._hand_out(reply, service, country)
        finally:
            self._busy.discard(user_id)
            self._tasks.discard(task)

    async def close(self) -> None:
        """Stop every wait still running; each number without a code is refunded."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _hand_out(self, reply: Reply, service: str, country: str) -> str | None:
        try:
            async with self.gsim.orders.activation(
                service, country, max_price=self.max_price
            ) as act:
                await reply(
                    f"Your number: {act.phone_number}\n"
                    f"Enter it in {service}; the code will follow here."
                )
                try:
                    code = await act.wait_for_code(timeout=self.timeout)
                except gsim_async.NoCodeError:
                    await reply("No code came for that number. It was refunded: try again.")
                    return None
                await reply(f"Your code: {code}")
                return code
        except gsim_async.InsufficientBalanceError:
            log.warning("the gsim balance is too low to buy a number")
            await reply("The bot is out of credit right now; try again later.")
        except gsim_async.PriceTooHighError:
            await reply(f"Numbers for {service} in {country} cost too much right now.")
        except gsim_async.InvalidArgumentError:
            await reply("Usage: /number [service] [country], e.g. /number telegram russia")
        except (gsim_async.NotFoundError, gsim_async.ValidationError):
            await reply(f"No numbers for {service} in {country}. Try /number telegram russia.")
        except gsim_async.GsimError as exc:
            log.warning("could not hand out a number: %s", exc)
            await reply("The number service is not available right now; try again later.")
        return None


def make_router(desk: NumberDesk) -> Router:
    """The bot's Telegram side: commands, turned into calls of ``desk``."""
    router = Router(name="numbers")

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer("Send /number [service] [country] for a phone number and its code.")

    @router.message(Command("number"))
    async def number(message: Message, command: CommandObject) -> None:
        if message.from_user is None:
            return
        args = (command.args or "").split()
        service = args[0] if args else "telegram"
        country = args[1] if len(args) > 1 else "russia"
        await desk.hand_out(message.from_user.id, message.answer, service, country)

    return router


async def main() -> None:
    token = os.environ.get("BOT_TOKEN")
    if not token:
        sys.exit("set BOT_TOKEN to your bot's token (from @BotFather)")
    async with contextlib.AsyncExitStack() as stack:
        if os.environ.get("GSIM_API_KEY"):
            gsim = gsim_async.Client()
        else:
            from gsim_async.sandbox import Sandbox

            sandbox = await stack.enter_async_context(Sandbox(code_delay=(3.0, 8.0)))
            print(f"no GSIM_API_KEY: handing out sandbox numbers ({sandbox.base_url})")
            gsim = gsim_async.Client(sandbox.api_key, base_url=sandbox.base_url)
        await stack.enter_async_context(gsim)
        desk = NumberDesk(gsim)
        # aiogram leaves handlers running when polling stops: stop them, so the numbers
        # still waiting are refunded before the client closes.
        stack.push_async_callback(desk.close)
        dispatcher = Dispatcher()
        dispatcher.include_router(make_router(desk))
        await dispatcher.start_polling(Bot(token))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
