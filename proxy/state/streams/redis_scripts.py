"""The Lua scripts of `RedisStore`: each is one atomic round trip (resumable-streams.md section 4).

Keys of one stream (the `{sid}` hash tag keeps them in one Cluster slot), every one with a TTL:
- `llmsse:{sid}:meta`    hash: state (running|finished), last, size, owner, replica, token, reason, stop
- `llmsse:{sid}:events`  stream: entry `<seq>-0` with field `f` = the frame (the terminal also has `end`)
- `llmsse:{sid}:lease`   string: the owner's token, PX lease; renewed by the owner's `wait_stop`
- `llmsse:{sid}:readers` string: present while a reader is (PX grace, refreshed); gone = abandoned

Every write checks the owner's token against the lease and `state == running` in the same script:
that is the fence, so a paused owner that lost its lease cannot write after REAP ended the stream.
Keys are passed as KEYS[1..4] = meta, events, lease, readers (APPEND, the per-chunk call, gets only
the first three and the fewest arguments: packing them is most of its client-side cost).
"""

from __future__ import annotations

# Drop the oldest entries past the caps, to 9/10 of them (so a stream at its cap does not trim on
# every append); the last entry is always kept. Returns the new size in bytes.
_TRIM = """
local function trim(events, size, max_events, max_bytes)
  local count = redis.call('XLEN', events)
  if count <= max_events and size <= max_bytes then return size end
  local keep_events, keep_bytes = math.floor(max_events * 9 / 10), math.floor(max_bytes * 9 / 10)
  local cut, start = nil, '-'
  while count > 1 and (count > keep_events or size > keep_bytes) do
    local batch = redis.call('XRANGE', events, start, '+', 'COUNT', 64)
    if #batch == 0 then break end
    for _, entry in ipairs(batch) do
      if count <= 1 or (count <= keep_events and size <= keep_bytes) then break end
      size, count, cut = size - #entry[2][2], count - 1, entry[1]
    end
    if cut then start = '(' .. cut end
  end
  if cut then redis.call('XTRIM', events, 'MINID', (tonumber(string.match(cut, '^(%d+)')) + 1) .. '-0') end
  return size
end
"""

# ARGV: owner, replica, token, lease_ms, grace_ms, ttl_ms, max_events, max_bytes. Returns 0 if the sid
# is taken. The TTL and the caps are kept in meta, so that the per-chunk APPEND carries only its frames.
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running', 'last', 0, 'size', 0, 'owner', ARGV[1], 'replica', ARGV[2],
           'token', ARGV[3], 'stop', 0, 'ttl', ARGV[6], 'cap_events', ARGV[7], 'cap_bytes', ARGV[8])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
redis.call('SET', KEYS[4], 1, 'PX', ARGV[5])
return 1
"""

_FENCE = """
local function fence(token)
  if redis.call('GET', KEYS[3]) ~= token then return 'FENCED the lease is lost' end
  if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 'FENCED the stream is finished' end
  return nil
end
local function add(first, frames_from, last_is_end)
  local size = tonumber(redis.call('HGET', KEYS[1], 'size'))
  local seq = first - 1
  for i = frames_from, #ARGV do
    seq = seq + 1
    if last_is_end and i == #ARGV then
      redis.call('XADD', KEYS[2], seq .. '-0', 'f', ARGV[i], 'end', 1)
    else
      redis.call('XADD', KEYS[2], seq .. '-0', 'f', ARGV[i])
    end
    size = size + #ARGV[i]
  end
  return seq, size
end
"""

# KEYS: meta, events, lease. ARGV: token, first_seq, frames... Returns the last seq.
APPEND = _TRIM + _FENCE + """
local fenced = fence(ARGV[1])
if fenced then return redis.error_reply(fenced) end
local m = redis.call('HMGET', KEYS[1], 'last', 'ttl', 'cap_events', 'cap_bytes')
local last, first = tonumber(m[1]), tonumber(ARGV[2])
if first <= last then return last end
if first ~= last + 1 then return redis.error_reply('GAP append at seq ' .. first .. ' after ' .. last) end
local seq, size = add(first, 3, false)
size = trim(KEYS[2], size, tonumber(m[3]), tonumber(m[4]))
redis.call('HSET', KEYS[1], 'last', seq, 'size', size)
redis.call('PEXPIRE', KEYS[1], m[2])
redis.call('PEXPIRE', KEYS[2], m[2])
return seq
"""

# ARGV: token, seq, reason, retention_ms, frame. Returns the last seq.
FINISH = _TRIM + _FENCE + """
local m = redis.call('HMGET', KEYS[1], 'last', 'state', 'token', 'cap_events', 'cap_bytes')
local last, seq = tonumber(m[1]), tonumber(ARGV[2])
if m[2] == 'finished' and m[3] == ARGV[1] and seq <= last then return last end
local fenced = fence(ARGV[1])
if fenced then return redis.error_reply(fenced) end
if seq ~= last + 1 then return redis.error_reply('GAP finish at seq ' .. seq .. ' after ' .. last) end
local _, size = add(seq, 5, true)
size = trim(KEYS[2], size, tonumber(m[4]), tonumber(m[5]))
redis.call('HSET', KEYS[1], 'state', 'finished', 'last', seq, 'size', size, 'reason', ARGV[3])
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return seq
"""

# The owner's heartbeat. ARGV: token, lease_ms, ttl_ms. Returns -1 when fenced, else stop * 2 + present.
RENEW = """
if redis.call('GET', KEYS[3]) ~= ARGV[1] or redis.call('HGET', KEYS[1], 'state') ~= 'running' then return -1 end
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return tonumber(redis.call('HGET', KEYS[1], 'stop')) * 2 + redis.call('EXISTS', KEYS[4])
"""

# A reader found the lease gone: end the stream with the terminal it built for seq last + 1.
# ARGV: seq, retention_ms, frame. Returns 1 if it wrote, 0 if the owner lives, the stream already
# ended, or `seq` is stale (the caller reads the stream again). Whoever runs it first wins.
REAP = """
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
local seq = tonumber(ARGV[1])
if seq ~= tonumber(redis.call('HGET', KEYS[1], 'last')) + 1 then return 0 end
redis.call('XADD', KEYS[2], seq .. '-0', 'f', ARGV[3], 'end', 1)
redis.call('HSET', KEYS[1], 'state', 'finished', 'last', seq, 'reason', 'error', 'token', '')
redis.call('DEL', KEYS[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

# ARGV: sid. Returns 0 if unknown, else 1; on a running stream it sets the stop flag (the owner's next
# heartbeat sees it) and tells the owner's replica at once on its channel (STOP_CHANNEL + replica).
STOP_CHANNEL = "llmsse:stop:"
STOP = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
if state == 'running' then
  redis.call('HSET', KEYS[1], 'stop', 1)
  redis.call('PUBLISH', '""" + STOP_CHANNEL + """' .. (redis.call('HGET', KEYS[1], 'replica') or ''), ARGV[1])
end
return 1
"""

SCRIPTS = {"create": CREATE, "append": APPEND, "finish": FINISH, "renew": RENEW, "reap": REAP, "stop": STOP}
