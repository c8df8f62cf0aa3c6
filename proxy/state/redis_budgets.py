"""Budget counters in Redis, shared by every replica: `BudgetStore` in one Lua script per call.

A counter is `llmsse:budget:<identity>:<meter>:<window index>`, an integer that expires two windows
after its own starts. The scripts read the server's clock (`TIME`), so replicas with skewed clocks still
share one window. RESERVE is `decide` (proxy/state/budgets.py) in Lua: read every meter, refuse on the
first one spent, cap the answer, charge them all; nothing can interleave, so 100 requests racing for a
budget that fits 10 admit exactly 10. SETTLE adds a correction only to a counter that still exists.

Redis down or silent: `reserve` and `read` raise StoreUnavailable (503) after about a second, as the
rate limits do (proxy/state/redis.py): a budget fails closed, never open. A settle that fails is
logged and counted; the reservation it would have corrected stays charged (the budget errs tight).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from llm_sse_proxy.proxy.state.budgets import Ask, Charge, Grant, Meter, Reading, Refusal, amount
from llm_sse_proxy.proxy.state.redis import SharedRedis


PREFIX = "llmsse:budget:"
KINDS = {"requests": "r", "tokens": "t", "spend": "s"}

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"

# KEYS: one prefix per meter. ARGV: prompt, max tokens, input price, output price, then per meter
# window, limit, kind (r|t|s). Returns {0, meter index, seconds to wait} or {1, cap, window index...}.
RESERVE = _NOW + """
local prompt, cap, pin, pout = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local windows, limits, kinds, index = {}, {}, {}, {}
for i = 1, #KEYS do
  local window, limit, kind = tonumber(ARGV[2 + 3 * i]), tonumber(ARGV[3 + 3 * i]), ARGV[4 + 3 * i]
  local w = math.floor(now / window)
  local left = limit - tonumber(redis.call('GET', KEYS[i] .. ':' .. w) or '0')
  if kind == 't' then cap = math.min(cap, left)
  elseif kind == 's' and pout > 0 then cap = math.min(cap, math.floor(left / pout)) end
  if left < 1 or cap < 1 then return {0, i, tostring((w + 1) * window - now)} end
  windows[i], kinds[i], index[i] = window, kind, w
end
local reply = {1, cap}
for i = 1, #KEYS do
  local amount = 1
  if kinds[i] == 't' then amount = prompt + cap elseif kinds[i] == 's' then amount = prompt * pin + cap * pout end
  local key = KEYS[i] .. ':' .. index[i]
  redis.call('INCRBY', key, amount)
  redis.call('EXPIRE', key, windows[i] * 2)
  reply[#reply + 1] = index[i]
end
return reply
"""

# KEYS: counters; ARGV: the correction for each. A counter that has expired stays gone.
SETTLE = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCRBY', KEYS[i], ARGV[i]) end
end
return 0
"""

# KEYS: one prefix per meter; ARGV: the windows. Returns {now, used...}.
READ = _NOW + """
local reply = {tostring(now)}
for i = 1, #KEYS do
  local w = math.floor(now / tonumber(ARGV[i]))
  reply[#reply + 1] = tonumber(redis.call('GET', KEYS[i] .. ':' .. w) or '0')
end
return reply
"""

# KEYS: one prefix per meter; ARGV: the windows. Deletes the current windows' counters.
RESET = _NOW + """
for i = 1, #KEYS do redis.call('DEL', KEYS[i] .. ':' .. math.floor(now / tonumber(ARGV[i]))) end
return 0
"""

SCRIPTS = {"reserve": RESERVE, "settle": SETTLE, "read": READ, "reset": RESET}


class RedisBudgets:
    """`BudgetStore` on the process's one Redis client."""

    def __init__(self, redis: SharedRedis) -> None:
        self.redis = redis
        self._scripts: dict[str, AsyncScript] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def reserve(self, identity: str, meters: Sequence[Meter], ask: Ask) -> Grant | Refusal:
        args: list[Any] = [ask.prompt, ask.max_tokens, ask.input_price, ask.output_price]
        for meter in meters:
            args += [meter.window, meter.limit, KINDS[meter.kind]]
        with self.redis.failures("budget"):
            reply = await self._scripts["reserve"](keys=[_prefix(identity, m) for m in meters], args=args)
        if int(reply[0]) == 0:
            return Refusal(meters[int(reply[1]) - 1], float(reply[2]))
        cap = int(reply[1])
        charges = (Charge(m, int(index), amount(m, ask, cap)) for m, index in zip(meters, reply[2:], strict=True))
        return Grant(cap, tuple(charges))

    def settle(self, identity: str, corrections: Sequence[tuple[Charge, int]]) -> None:
        wanted = [(c, d) for c, d in corrections if d]
        if wanted:
            self._spawn(self._settle(identity, wanted))

    async def _settle(self, identity: str, wanted: list[tuple[Charge, int]]) -> None:
        keys = [f"{_prefix(identity, c.meter)}:{c.window_index}" for c, _ in wanted]
        try:
            await self._scripts["settle"](keys=keys, args=[d for _, d in wanted])
        except (RedisError, OSError) as exc:
            self.redis.failed("budget_settle", exc, "the reservation stays charged")

    async def read(self, identity: str, meters: Sequence[Meter]) -> list[Reading]:
        with self.redis.failures("budget_read"):
            reply = await self._scripts["read"](keys=[_prefix(identity, m) for m in meters],
                                                args=[m.window for m in meters])
        now = float(reply[0])
        return [Reading(m, int(used), (now // m.window + 1) * m.window - now) for m, used in zip(meters, reply[1:])]

    async def reset(self, identity: str, meters: Sequence[Meter]) -> None:
        with self.redis.failures("budget_reset"):
            await self._scripts["reset"](keys=[_prefix(identity, m) for m in meters], args=[m.window for m in meters])

    async def settled(self) -> None:
        """Wait for the settles under way (tests, and closing)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def __aenter__(self) -> RedisBudgets:
        self._scripts = {name: self.redis.client.register_script(body) for name, body in SCRIPTS.items()}
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _prefix(identity: str, meter: Meter) -> str:
    return f"{PREFIX}{identity}:{meter.name}"
