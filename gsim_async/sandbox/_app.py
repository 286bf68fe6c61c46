"""The aiohttp.web application: ``/api/v1`` behind its middleware, plus ``/_sandbox/``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from . import _control
from ._api import Api
from ._pipeline import Pipeline

if TYPE_CHECKING:
    from ._sandbox import Sandbox

API = "/api/v1"


def build_app(sandbox: Sandbox) -> web.Application:
    """The whole server for ``sandbox``."""
    state = sandbox._state
    pipeline = Pipeline(sandbox._injector, sandbox._counters, state.clock, sandbox._background)
    api = Api(state, sandbox._injector, sandbox._background, sandbox._timestamps)
    app = web.Application(middlewares=[pipeline.middleware])
    for method, path, handler in api.routes():
        route = app.router.add_route(method, API + path, handler)
        pipeline.route_names[route] = f"{method} {API}{path}"
    _control.add_routes(app, sandbox)
    return app
