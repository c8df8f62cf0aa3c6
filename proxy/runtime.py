"""What the app's lifespan opens and closes: one adapter per model with its HTTP client, and the
resumable streams' store and generations. Held on `app.state.runtime` for the doors."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx2
from starlette.applications import Starlette

from llm_sse_proxy.adapters import REGISTRY
from llm_sse_proxy.proxy.admission.admit import Admission
from llm_sse_proxy.proxy.admission.limits import CappedAdapter
from llm_sse_proxy.proxy.config import Config, DeploymentConfig, ModelConfig
from llm_sse_proxy.proxy.deltas import Adapter, Sleep
from llm_sse_proxy.proxy.doors.response import Shutdown
from llm_sse_proxy.proxy.relay.relay import Upstream
from llm_sse_proxy.proxy.resume.generations import Generations
from llm_sse_proxy.proxy.resume.streams import ResumableStreams
from llm_sse_proxy.proxy.state.redis import SharedRedis
from llm_sse_proxy.proxy.routing.deployments import Deployment, ModelRoute
from llm_sse_proxy.proxy.routing.route import Routes
from llm_sse_proxy.proxy.state.routing import RoutingState
from llm_sse_proxy.proxy.state.streams.backends import BACKENDS as STORE_BACKENDS
from llm_sse_proxy.proxy.state.streams.memory import MemoryStore
from llm_sse_proxy.proxy.doors.http import request_id
from llm_sse_proxy.proxy.telemetry.metrics import Metrics
from llm_sse_proxy.proxy.telemetry.tracing import Tracing, open_tracing

HttpClientFactory = Callable[[ModelConfig], httpx2.AsyncClient]


@dataclass
class Runtime:
    """What the lifespan opens: one adapter per model, and the clients they share."""

    upstreams: dict[str, Upstream]  # each model's first deployment
    routes: Routes
    resumable: ResumableStreams | None = None  # None with resume.enabled: false
    tracing: Tracing | None = None  # None with tracing.enabled: false (proxy/telemetry/tracing.py)


@dataclass
class RuntimeParts:
    """What create_app built that the lifespan opens, in order."""

    config: Config
    redis: SharedRedis | None  # the process's one Redis client: opened first, closed last
    admission: Admission
    routing: RoutingState
    metrics: Metrics
    make_client: HttpClientFactory
    sleep: Sleep
    shutdown: Shutdown | None

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if self.redis is not None:
                await stack.enter_async_context(self.redis)
            await stack.enter_async_context(self.admission.limits)
            await stack.enter_async_context(self.admission.budgets.store)  # on the process's Redis client
            await stack.enter_async_context(self.routing)
            models = {m.name: await self._model(stack, m) for m in self.config.models}
            routes = Routes(models, self.routing, total=self.config.timeouts.total,
                            cooldown_max=self.config.retry.cooldown_max)
            upstreams = {name: model.deployments[0].upstream for name, model in models.items()}
            tracing = open_tracing(self.config.tracing, self.config.models, self.metrics)
            if tracing is not None:
                stack.push_async_callback(tracing.aclose)  # after the streams and their spans have ended
            app.state.runtime = Runtime(upstreams, routes, await self._resumable(stack, tracing), tracing)
            yield

    async def _model(self, stack: AsyncExitStack, model: ModelConfig) -> ModelRoute:
        """The model's deployments, each with its adapter (and HTTP client); one for a model without any."""
        deployments = []
        for index, config in enumerate(model.upstreams()):
            label = config.name or str(index)
            upstream = await self._upstream(stack, model, config)
            deployments.append(Deployment(f"{model.name}/{label}", label, upstream, config.weight, config.rpm, config.tpm,
                                          listed=bool(model.deployments)))
        breaker = model.breaker.over(self.config.breaker) if model.breaker else self.config.breaker
        return ModelRoute(model.name, tuple(deployments), model.strategy, breaker)

    async def _upstream(self, stack: AsyncExitStack, model: ModelConfig, deployment: DeploymentConfig) -> Upstream:
        spec = REGISTRY[deployment.adapter]
        http = await stack.enter_async_context(self.make_client(model)) if spec.uses_http else None
        adapter: Adapter = spec.build(deployment.options, http=http, sleep=self.sleep)
        if model.max_tokens_cap is not None:
            adapter = CappedAdapter(adapter, model.max_tokens_cap)
        return Upstream(model.name, adapter, show_reasoning=model.reasoning == "stream",
                        recovery=model.recovery, continue_with=model.continue_with)

    async def _resumable(self, stack: AsyncExitStack, tracing: Tracing | None) -> ResumableStreams | None:
        resume, server = self.config.resume, self.config.server
        if not resume.enabled:
            return None
        store = await stack.enter_async_context(STORE_BACKENDS[resume.store](resume, self.redis))
        if isinstance(store, MemoryStore):
            self.metrics.watch_store_size(lambda: store.size)
        generations = Generations(store, shutdown=self.shutdown, on_store_failure=self.metrics.store_failure)
        stack.push_async_callback(generations.aclose)  # before the store closes
        return ResumableStreams(
            store, generations, self.admission.auth, self.admission.limits,
            ping_interval=server.ping_interval, send_timeout=server.send_timeout, request_id=request_id,
            readers_per_stream=resume.max_readers_per_stream, on_resume=functools.partial(_resumed, self.metrics, tracing))


def _resumed(metrics: Metrics, tracing: Tracing | None, sid: str, after: int) -> None:
    metrics.resumed()
    if tracing is not None:
        tracing.resumed(sid, after)


__all__ = ["HttpClientFactory", "Runtime", "RuntimeParts"]
