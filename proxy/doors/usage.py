"""`GET /usage`: what the caller has used and has left of each budget window, for a frontend to show;
`POST /usage/reset` (issue 23). An admin key (`auth.admin_keys`) may name anyone: `?user=<id>` (with
`&tier=<tier>` to read a tier's budget) or `?key=<key id>`; nobody else may."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from llm_sse_proxy.proxy.admission.auth import Client
from llm_sse_proxy.proxy.doors.chats import Chats
from llm_sse_proxy.proxy.doors.errors import DoorErrors
from llm_sse_proxy.proxy.doors.http import request_id
from llm_sse_proxy.proxy.errors import BadRequest, Forbidden

NO_STORE = {"cache-control": "no-store"}


@dataclass
class UsageDoor:
    chats: Chats

    errors: DoorErrors | None = None  # the proxy's own shape

    def routes(self) -> list[BaseRoute]:
        return [Route("/usage", self.usage, methods=["GET"]), Route("/usage/reset", self.reset, methods=["POST"])]

    async def usage(self, request: Request) -> Response:
        client = await self._whose(request)
        budgets = self.chats.admission.budgets
        shown = await budgets.usage(client.identity, budgets.budget_for(client))
        body: dict[str, Any] = {"identity": client.identity, "tier": client.tier, "budgets": shown}
        return JSONResponse(body, headers={**NO_STORE, "x-request-id": request_id(request)})

    async def reset(self, request: Request) -> Response:
        if not self.chats.admission.auth.is_admin(request.headers):
            raise Forbidden("only an admin key (auth.admin_keys) may reset usage")
        client = self._named(request)
        budgets = self.chats.admission.budgets
        await budgets.reset(client.identity, budgets.budget_for(client))
        return JSONResponse({"identity": client.identity, "reset": True},
                            headers={**NO_STORE, "x-request-id": request_id(request)})

    async def _whose(self, request: Request) -> Client:
        if self.chats.admission.auth.is_admin(request.headers):
            return self._named(request)
        if {"user", "key"} & set(request.query_params):
            raise Forbidden("only an admin key (auth.admin_keys) may read another identity's usage")
        return await self.chats.admission.admit(request)

    @staticmethod
    def _named(request: Request) -> Client:
        params = request.query_params
        if "user" in params and params["user"]:
            return Client(f"user:{params['user']}", authenticated=True, tier=params.get("tier") or None)
        if "key" in params and params["key"]:
            return Client(f"key:{params['key']}", authenticated=True)
        raise BadRequest("name whose usage: ?user=<id> (and &tier=<tier>) or ?key=<key id>")
