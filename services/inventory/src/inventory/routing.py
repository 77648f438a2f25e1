"""The hot routes without FastAPI's per-request machinery: DirectRoute and DirectDispatch."""

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import request_response
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request, Exception], Coroutine[Any, Any, Response]]


class DirectRoute(APIRoute):
    """An APIRoute whose endpoint is called as `endpoint(request, **path_params)`.

    FastAPI's per-request machinery (parameter solving, dependency exit stacks) costs more CPU
    than the database round trip of GET /api/movies/{id}. Endpoints on this route class take
    the Request and string path parameters only, parse the rest themselves and return a
    Response. DirectDispatch serves them; they still appear in the OpenAPI schema, built from
    their signature, `response_model` and `openapi_extra`.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.app = request_response(self.get_route_handler())

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            return await endpoint(request, **request.path_params)

        return handler


class DirectDispatch:
    """ASGI layer in front of FastAPI's middleware stack, serving the DirectRoutes itself.

    Five middlewares (server error, telemetry, body limit, exceptions, exit stack), the
    router's walk over every route and Starlette's per-route exception wrapper cost ~40 µs
    per request on this machine, a quarter of a worker's CPU for POST /api/movies. A request
    whose method and path match a DirectRoute is answered here, its errors rendered by the
    app's own exception handlers as the middlewares would: a handled error is its JSON
    answer, anything else the 500 handler's answer, then re-raised for the server to log
    (ServerErrorMiddleware does the same). Every other request, a wrong method (405 + Allow)
    included, goes through FastAPI. DirectRoute paths must not overlap other routes (none do).
    """

    def __init__(self, app: ASGIApp, fastapi: FastAPI) -> None:
        self.app = app
        self.handlers: dict[Any, Handler] = fastapi.exception_handlers  # all async here
        self.static: dict[tuple[str, str], DirectRoute] = {}
        self.templated: dict[str, list[DirectRoute]] = {}
        for route in fastapi.router.routes:
            if isinstance(route, DirectRoute):
                for method in route.methods:
                    if route.param_convertors:
                        self.templated.setdefault(method, []).append(route)
                    else:
                        self.static.setdefault((method, route.path), route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            method, path = scope["method"], scope["path"]
            route = self.static.get((method, path))
            if route is not None:
                await self._serve(route, {}, scope, receive, send)
                return
            for route in self.templated.get(method, ()):
                match = route.path_regex.match(path)
                if match:
                    params = {
                        name: route.param_convertors[name].convert(value)
                        for name, value in match.groupdict().items()
                    }
                    await self._serve(route, params, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _serve(
        self,
        route: DirectRoute,
        params: dict[str, Any],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        scope["route"] = route  # the metrics label (observability.Observe)
        scope["path_params"] = params
        request = Request(scope, receive)
        try:
            response = await route.endpoint(request, **params)
        except Exception as exc:
            handler = self._handler(exc)
            await (await handler(request, exc))(scope, receive, send)
            if handler is self.handlers[Exception]:
                raise
            return
        await response(scope, receive, send)

    def _handler(self, exc: Exception) -> Handler:
        for cls in type(exc).__mro__:
            if cls in self.handlers:
                return self.handlers[cls]
        raise AssertionError("no handler for Exception")  # install_error_handlers sets one
