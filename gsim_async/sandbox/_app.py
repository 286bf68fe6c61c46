"""The aiohttp.web application: ``/api/v1`` behind its middleware, plus ``/_sandbox/``."""

from __future__ import annotations

from aiohttp import web

from . import _control
from ._api import Api
from ._faults import FaultInjector
from ._pipeline import Pipeline
from ._state import State
from ._stats import Counters
from ._tasks import Background
from ._timestamps import Timestamps

API = "/api/v1"


def build_app(
    state: State,
    injector: FaultInjector,
    counters: Counters,
    background: Background,
    timestamps: Timestamps,
    control: _control.Controlled,
) -> web.Application:
    """The whole server of one sandbox: its API on ``state``, its control API on ``control``."""
    pipeline = Pipeline(injector, counters, state.clock, background)
    api = Api(state, injector, background, timestamps)
    app = web.Application(middlewares=[pipeline.middleware])
    for method, path, handler in api.routes():
        # RFC 9110: a resource that answers GET answers HEAD (aiohttp leaves out the body).
        resource = app.router.add_resource(API + path)  # one per path, as add_route does
        for verb in ("GET", "HEAD") if method == "GET" else (method,):
            route = resource.add_route(verb, handler)
            # The documented path, without the pattern an {id} may carry.
            pipeline.route_names[route] = f"{verb} {resource.canonical}"
    _control.add_routes(app, control)
    return app
