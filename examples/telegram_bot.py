"""A Telegram bot (aiogram 3) that hands a user a phone number, then its SMS code.

The user sends ``/number [service] [country]``; the bot buys a number, replies with
it at once, and replies again with the code when it arrives. A number whose code
does not come in time is banned and refunded, and so is every number still waiting
when the bot is stopped (Ctrl-C, or SIGTERM from ``docker stop``, systemd or
Kubernetes): ``orders.activation()`` and ``Client.stop()`` see to both.

One ``gsim_async.Client`` lives as long as the dispatcher: the startup hook makes it,
the shutdown hook closes it, and handlers receive it by name from the dispatcher's
workflow data, as aiogram injects anything stored there (``desk: NumberDesk`` below).

Usage::

    pip install 'gsim-async' 'aiogram>=3.4'
    BOT_TOKEN=123456:ABC... python examples/telegram_bot.py

With ``GSIM_API_KEY`` set it buys real numbers; without, it uses the embedded
sandbox (no money), whose codes arrive after a few seconds. ``TELEGRAM_API_URL``
points it at a self-hosted Bot API server instead of Telegram's; ``CODE_TIMEOUT``
(seconds a number waits for its code, default 300) and ``POLL_INTERVAL`` (seconds
between looks for codes, default 2) tune it.

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
from typing import Any

from aiogram import Bot, Dispatcher, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
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
        self._closing = asyncio.Event()

    async def hand_out(
        self, user_id: int, reply: Reply, service: str = "telegram", country: str = "russia"
    ) -> str | None:
        """Buy a number for ``user_id``, reply with it, then with its code; return the code."""
        if self._closing.is_set():
            await reply("The bot is restarting; try again in a minute.")
            return None
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

    async def close(self, timeout: float = 5) -> None:
        """Give up every number still waiting (refunded), tell its user, and return.

        Stops the client (``Client.stop()``): each wait ends at once, its number given
        up; the user hears why. A reply that has not gone out within ``timeout``
        seconds is cancelled.
        """
        self._closing.set()
        self.gsim.stop()
        tasks = list(self._tasks)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)

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
        except gsim_async.ClientClosedError:
            # The bot is stopping (SIGTERM, Ctrl-C): the number, if any, was given up.
            await reply("The bot is restarting: your number was refunded. Try again in a minute.")
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


def make_router() -> Router:
    """The bot's Telegram side: commands, turned into calls of the injected ``desk``."""
    router = Router(name="numbers")

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer("Send /number [service] [country] for a phone number and its code.")

    @router.message(Command("number"))
    async def number(message: Message, command: CommandObject, desk: NumberDesk) -> None:
        if message.from_user is None:
            return
        args = (command.args or "").split()
        service = args[0] if args else "telegram"
        country = args[1] if len(args) > 1 else "russia"
        await desk.hand_out(message.from_user.id, message.answer, service, country)

    return router


def make_dispatcher(*, timeout: float = 300, **client_options: Any) -> Dispatcher:
    """A dispatcher whose life is the client's: opened on startup, closed on shutdown.

    ``client_options`` go to ``gsim_async.Client`` (none: ``GSIM_API_KEY`` and
    ``GSIM_BASE_URL`` from the environment).
    """
    dispatcher = Dispatcher()
    dispatcher.include_router(make_router())

    @dispatcher.startup()
    async def open_client(dispatcher: Dispatcher) -> None:
        gsim = gsim_async.Client(**client_options)
        await gsim.__aenter__()  # an earlier run's journal, if any, is taken over now
        # Whatever is stored here reaches every handler that names it as an argument.
        dispatcher["gsim"] = gsim
        dispatcher["desk"] = NumberDesk(gsim, timeout=timeout)

    @dispatcher.shutdown()
    async def close_client(dispatcher: Dispatcher) -> None:
        # Polling stopped (SIGTERM, Ctrl-C), but aiogram leaves handlers running: end
        # their waits (every number refunded, every user told), then close the client,
        # which waits for the refunds to land.
        await dispatcher["desk"].close()
        await dispatcher["gsim"].aclose()

    return dispatcher


async def main() -> None:
    token = os.environ.get("BOT_TOKEN")
    if not token:
        sys.exit("set BOT_TOKEN to your bot's token (from @BotFather)")
    options: dict[str, Any] = {"poll_interval": float(os.environ.get("POLL_INTERVAL", "2"))}
    async with contextlib.AsyncExitStack() as stack:
        if not os.environ.get("GSIM_API_KEY"):
            from gsim_async.sandbox import Sandbox

            sandbox = await stack.enter_async_context(Sandbox(code_delay=(3.0, 8.0)))
            print(f"no GSIM_API_KEY: handing out sandbox numbers ({sandbox.base_url})")
            options.update(api_key=sandbox.api_key, base_url=sandbox.base_url)
        session = None
        if os.environ.get("TELEGRAM_API_URL"):  # a self-hosted Bot API server
            api = TelegramAPIServer.from_base(os.environ["TELEGRAM_API_URL"])
            session = AiohttpSession(api=api)
        dispatcher = make_dispatcher(
            timeout=float(os.environ.get("CODE_TIMEOUT", "300")), **options
        )
        # start_polling stops on SIGTERM and SIGINT, then runs the shutdown hook.
        await dispatcher.start_polling(Bot(token, session=session))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    # asyncio.run() whose SIGTERM refunds, until aiogram's polling takes the signal over.
    gsim_async.run(main())
