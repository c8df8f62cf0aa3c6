"""The stop signals of the streams this process generates on the Redis store.

A stop asked in this process wakes its owner at once. A stop asked on another replica sets the stream's
stop flag, which the owner's heartbeat sees within a second, and publishes the stream id on the owner
replica's channel (`llmsse:stop:<replica>`, the STOP script), which wakes it at once: one subscription
per process, not per stream. Pub/sub is at-most-once (a message sent while this process reconnects is
lost), so the flag stays the guarantee and the message is only the fast path.
"""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError

from llm_sse_proxy.proxy.state.redis import SharedRedis
from llm_sse_proxy.proxy.state.streams.redis_scripts import STOP_CHANNEL


class StopSignals:
    def __init__(self, redis: SharedRedis, replica: str, *, poll: float, retry: float) -> None:
        self.redis = redis  # the listener holds one connection of its pool for as long as the process lives
        self.channel = STOP_CHANNEL + replica
        self.poll = poll  # seconds a wait for a message lasts (get_message's own read timeout)
        self.retry = retry  # seconds before subscribing again after Redis failed
        self._events: dict[str, asyncio.Event] = {}
        self._closing = False

    def watch(self, sid: str) -> asyncio.Event:
        return self._events.setdefault(sid, asyncio.Event())

    def forget(self, sid: str, event: asyncio.Event) -> None:
        if self._events.get(sid) is event:
            del self._events[sid]

    def wake(self, sid: str) -> None:
        if (event := self._events.get(sid)) is not None:
            event.set()

    def wake_all(self) -> None:
        self._closing = True
        for event in self._events.values():
            event.set()

    async def listen(self) -> None:
        """Wake the owners of streams stopped on other replicas, until `wake_all` (shutdown)."""
        while not self._closing:
            pubsub = self.redis.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                while not self._closing:  # as well as the cancel, which a wait inside the client may swallow
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.poll)
                    if message is not None:
                        self.wake(message["data"].decode())
            except (RedisError, OSError) as exc:
                self.redis.failed("stop_channel", exc, "owners see stops at their heartbeat meanwhile")
                await asyncio.sleep(self.retry)  # the heartbeat still carries stops meanwhile
            finally:
                await pubsub.aclose()
