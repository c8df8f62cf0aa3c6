"""The Lua scripts of `RedisRouting` (proxy/state/routing_redis.py): each one atomic round trip.

They run the rules of proxy/routing/choose.py and proxy/routing/breaker.py next to the counters, on the
server's clock (`TIME`), so replicas with skewed clocks share one breaker and one quota. Keys of one
deployment, all with a TTL (`llmsse:route:<model>/<deployment>:` then):
- `state` hash: open_until, probe_until, fails, fail_start (ms), latency (ms), seen (ms)
- `busy`  sorted set: the leases of its streams in flight, scored by when each lease ends
- `rpm`   sorted set: one member per request of the last minute, scored by when it went
- `tpm`   hash: tokens used, per second of the last minute
"""

from __future__ import annotations

PROBE_MS = 60_000  # proxy/routing/breaker.py's PROBE_LEASE
STATE_TTL_MS = 3_600_000  # an hour without news forgets a deployment (its latency, its failures)

_NOW = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

_CHOOSE = """
local function by_weight(list, r)
  local total = 0
  for _, c in ipairs(list) do total = total + c.weight end
  local point = r * total
  for i, c in ipairs(list) do
    point = point - c.weight
    if point < 0 then return i end
  end
  return #list
end
local function cost(c) return (c.latency or 0) * (c.busy + 1) end
local function others(list, skip)
  local rest, at = {}, {}
  for i, c in ipairs(list) do if i ~= skip then rest[#rest + 1] = c; at[#at + 1] = i end end
  return rest, at
end
local function choose(strategy, list, r1, r2)
  if #list == 1 or strategy == 'ordered' then return 1 end
  if strategy == 'least_busy' then
    local fewest = math.huge
    for _, c in ipairs(list) do if c.busy < fewest then fewest = c.busy end end
    local tied, at = {}, {}
    for i, c in ipairs(list) do if c.busy == fewest then tied[#tied + 1] = c; at[#at + 1] = i end end
    return at[by_weight(tied, r1)]
  end
  if strategy == 'latency' then
    local first = by_weight(list, r1)
    local rest, at = others(list, first)
    local second = at[by_weight(rest, r2)]
    if cost(list[second]) < cost(list[first]) then return second end
    return first
  end
  return by_weight(list, r1)
end
"""

# The wait (ms) before a deployment may be asked: its breaker, then its quotas; 0 when it may now.
_WAIT = """
local function quota_wait(reqs, toks, rpm, tpm)
  local wait = 0
  if rpm > 0 and redis.call('ZCARD', reqs) >= rpm then
    local oldest = redis.call('ZRANGE', reqs, 0, 0, 'WITHSCORES')
    wait = tonumber(oldest[2]) + 60000 - now
  end
  if tpm > 0 then
    local buckets, used, first = redis.call('HGETALL', toks), 0, nil
    for i = 1, #buckets, 2 do
      local at = tonumber(buckets[i])
      if at <= now - 60000 then redis.call('HDEL', toks, buckets[i])
      else
        used = used + tonumber(buckets[i + 1])
        if first == nil or at < first then first = at end
      end
    end
    if used >= tpm then wait = math.max(wait, first + 60000 - now) end
  end
  return wait
end
local function breaker_wait(open_until, probe_until)
  if open_until > now then return open_until - now end
  if open_until > 0 and probe_until > now then return probe_until - now end
  return 0
end
"""

# ARGV: lease ms, lease id, r1, r2, latency half-life ms, model count; then per model: strategy, position,
# deployment count, and per deployment: index, weight, rpm (0: none), tpm (0: none), avoid (1: tried).
# KEYS: per deployment passed, its state, busy, rpm and tpm keys. Returns {position, index, probe, clean}
# for the one taken, or {-1, ms until one may be asked (-1: never)}.
TAKE = _NOW + _CHOOSE + _WAIT + """
local lease_ms, lease, r1, r2 = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local half_life, models = tonumber(ARGV[5]), tonumber(ARGV[6])
local a, k, soonest = 7, 1, -1
for m = 1, models do
  local strategy, position, n = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local fresh, tried = {}, {}
  for d = 1, n do
    local st, busy, reqs, toks = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
    local c = {index = tonumber(ARGV[a]), weight = tonumber(ARGV[a + 1]), keys = {st, busy, reqs}}
    local rpm, tpm, avoid = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[a + 4]
    a, k = a + 5, k + 4
    redis.call('ZREMRANGEBYSCORE', busy, '-inf', now)
    redis.call('ZREMRANGEBYSCORE', reqs, '-inf', now - 60000)
    local h = redis.call('HMGET', st, 'open_until', 'probe_until', 'fails', 'latency', 'seen')
    local open_until = tonumber(h[1]) or 0
    local wait = math.max(breaker_wait(open_until, tonumber(h[2]) or 0), quota_wait(reqs, toks, rpm, tpm))
    if wait > 0 then
      if soonest < 0 or wait < soonest then soonest = wait end
    else
      c.busy, c.half = redis.call('ZCARD', busy), open_until > 0
      c.clean = open_until == 0 and (tonumber(h[3]) or 0) == 0
      if h[4] then c.latency = tonumber(h[4]) * math.pow(0.5, math.max(0, now - tonumber(h[5])) / half_life) end
      if avoid == '1' then tried[#tried + 1] = c else fresh[#fresh + 1] = c end
    end
  end
  local ready = fresh
  if #ready == 0 then ready = tried end
  if #ready > 0 then
    local c = ready[choose(strategy, ready, r1, r2)]
    if c.half then redis.call('HSET', c.keys[1], 'probe_until', now + PROBE_MS) end
    redis.call('ZADD', c.keys[2], now + lease_ms, lease)
    redis.call('PEXPIRE', c.keys[2], lease_ms)
    redis.call('ZADD', c.keys[3], now, lease)
    redis.call('PEXPIRE', c.keys[3], 60000)
    return {position, c.index, c.half and 1 or 0, c.clean and 1 or 0}
  end
end
return {-1, soonest}
""".replace("PROBE_MS", str(PROBE_MS))

# KEYS[1] state; ARGV: ttft ms, half-life ms, alpha. A success closes the breaker; the latency estimate
# takes a peak at once and a drop by alpha (proxy/routing/choose.py's `measured`).
FIRST_TOKEN = _NOW + """
local sample, half_life, alpha = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'latency', 'seen')
local estimate = sample
if h[1] then
  local faded = tonumber(h[1]) * math.pow(0.5, math.max(0, now - tonumber(h[2])) / half_life)
  if sample < faded then estimate = faded + alpha * (sample - faded) end
end
redis.call('HDEL', KEYS[1], 'open_until', 'probe_until', 'fails', 'fail_start')
redis.call('HSET', KEYS[1], 'latency', tostring(estimate), 'seen', now)
redis.call('PEXPIRE', KEYS[1], STATE_TTL_MS)
return 0
""".replace("STATE_TTL_MS", str(STATE_TTL_MS))

# KEYS[1] state; ARGV: hold ms (0: none), failures, window ms, open for ms. proxy/routing/breaker.py's
# `failed` and `hold`. Returns 1 when the breaker is open after it.
FAILED = _NOW + """
local hold, failures, window, open_for = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local h = redis.call('HMGET', KEYS[1], 'open_until', 'fails', 'fail_start')
local open_until, fails, fail_start = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[3]) or 0
local function open(until_ms)
  redis.call('HSET', KEYS[1], 'open_until', until_ms, 'probe_until', 0, 'fails', 0)
  redis.call('PEXPIRE', KEYS[1], math.max(STATE_TTL_MS, until_ms - now + 60000))
  return 1
end
if hold > 0 then
  if now + hold > open_until then return open(now + hold) end
  return 1
end
if open_until > 0 then return open(now + open_for) end
if failures <= 0 then return 0 end
if fails == 0 or now - fail_start > window then fails, fail_start = 0, now end
fails = fails + 1
if fails >= failures then return open(now + open_for) end
redis.call('HSET', KEYS[1], 'fails', fails, 'fail_start', fail_start)
redis.call('PEXPIRE', KEYS[1], STATE_TTL_MS)
return 0
""".replace("STATE_TTL_MS", str(STATE_TTL_MS))

# KEYS: state, busy, tpm; ARGV: lease, tokens, probe (1: the lease was a half-open probe).
RELEASE = _NOW + """
redis.call('ZREM', KEYS[2], ARGV[1])
local tokens = tonumber(ARGV[2])
if tokens > 0 then
  redis.call('HINCRBY', KEYS[3], tostring(math.floor(now / 1000) * 1000), tokens)
  redis.call('PEXPIRE', KEYS[3], 61000)
end
if ARGV[3] == '1' and tonumber(redis.call('HGET', KEYS[1], 'open_until') or 0) > 0 then
  redis.call('HSET', KEYS[1], 'probe_until', 0)
end
return 0
"""

SCRIPTS = {"take": TAKE, "first_token": FIRST_TOKEN, "failed": FAILED, "release": RELEASE}
