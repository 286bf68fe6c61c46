"""A stand-in for Telegram's Bot API on 127.0.0.1, for the bot run in a real process.

aiogram talks to any Bot API server (``TelegramAPIServer.from_base``: a self-hosted one
is a documented setup); this one serves the few methods the bot calls (``getMe``,
``getUpdates`` with long polling, ``sendMessage``), records what the bot sends, and
hands it the messages a test writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiohttp import web

BOT = {"id": 4242, "is_bot": True, "first_name": "Numbers", "username": "numbers_bot"}


class TelegramStandIn:
    """Users' messages in (``send``), the bot's answers out (``sent``)."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.sent: list[tuple[int, str]] = []
        self.base_url = ""
        self._news = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def send(self, user_id: int, text: str) -> None:
        """A private message from user ``user_id`` to the bot (call in the server's loop)."""
        update_id = len(self.updates) + 1
        self.updates.append(
            {
                "update_id": update_id,
                "message": {
                    "message_id": update_id,
                    "date": int(time.time()),
                    "chat": {"id": user_id, "type": "private"},
                    "from": {"id": user_id, "is_bot": False, "first_name": f"user{user_id}"},
                    "text": text,
                    "entities": [
                        {"type": "bot_command", "offset": 0, "length": len(text.split()[0])}
                    ]
                    if text.startswith("/")
                    else [],
                },
            }
        )
        self._news.set()

    def said_to(self, user_id: int) -> list[str]:
        """What the bot sent to ``user_id``, in order."""
        return [text for chat, text in self.sent if chat == user_id]

    async def _handle(self, request: web.Request) -> web.Response:
        data: dict[str, Any] = {**request.query, **(await request.post())}
        method = request.match_info["method"]
        result: Any = True
        if method == "getMe":
            result = BOT
        elif method == "getUpdates":
            result = await self._updates(int(data.get("offset", 0)), float(data.get("timeout", 0)))
        elif method == "sendMessage":
            chat_id, text = int(data["chat_id"]), str(data["text"])
            self.sent.append((chat_id, text))
            result = {
                "message_id": 10_000 + len(self.sent),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "from": BOT,
                "text": text,
            }
        return web.json_response({"ok": True, "result": result})

    async def _updates(self, offset: int, timeout: float) -> list[dict[str, Any]]:
        # Long polling, as Telegram's: answer at once if there is news, else when some comes.
        fresh = [u for u in self.updates if u["update_id"] >= offset]
        if not fresh and timeout:
            self._news.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._news.wait(), min(timeout, 1.0))
            fresh = [u for u in self.updates if u["update_id"] >= offset]
        return fresh
