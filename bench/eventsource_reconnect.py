"""How long a browser's EventSource takes to come back after its connection is cut (issue 26 item 10: the
default `resume.grace` must cover it). Chromium (Debian's, through Playwright, as tests/browser) reads a
slow resumable stream from the proxy through a loopback forwarder; the forwarder resets the connection,
as a network blip would, and times the cut to the browser's next connection (it carries Last-Event-ID).

    .venv/bin/python bench/eventsource_reconnect.py --cuts 5

The proxy sends `retry: 1000` before a GET stream's first event, so this is about 1 s plus the connect.
Bounded: cuts x (a reconnect within 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llm_sse_proxy.proxy.app import create_app  # noqa: E402
from tests.browser.support import chromium  # noqa: E402
from tests.conftest import make_config, serve  # noqa: E402

SLOW = {"name": "slow", "adapter": "mock", "reply": " ".join(f"w{i}" for i in range(400)), "chunk_chars": 4,
        "chunk_delay_ms": 100}


class Forwarder:
    """127.0.0.1:<port> to the proxy; `reset()` aborts every connection but keeps listening."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.accepted: list[tuple[float, bool]] = []  # (when, whether the request carried Last-Event-ID)
        self.open: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]

    def reset(self) -> float:
        for writer in list(self.open):
            writer.transport.abort()
        return time.monotonic()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.accepted.append((time.monotonic(), b"last-event-id:" in head.lower()))
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.open |= {writer, up_writer}
        up_writer.write(head)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()

        tasks = [asyncio.ensure_future(pipe(reader, up_writer)), asyncio.ensure_future(pipe(up_reader, writer))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            for w in (writer, up_writer):
                self.open.discard(w)
                w.transport.abort()


async def measure(cuts: int) -> list[float]:
    config = make_config([SLOW], resume={"enabled": True, "grace": 60})
    waits = []
    async with serve(create_app(config)) as base, chromium() as browser:
        forwarder = Forwarder(int(base.rsplit(":", 1)[1]))
        await forwarder.start()
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{forwarder.port}/healthz")
        await page.evaluate("() => { window.got = 0; const es = new EventSource('/stream?prompt=hi');"
                            " es.onmessage = () => { window.got += 1; }; }")
        for _ in range(cuts):
            await page.wait_for_function("() => window.got > 3", timeout=30_000)
            before = len(forwarder.accepted)
            cut = forwarder.reset()
            async with asyncio.timeout(30):
                while len(forwarder.accepted) == before:
                    await asyncio.sleep(0.005)
            when, resumed = forwarder.accepted[-1]
            assert resumed, "the browser came back without Last-Event-ID"
            waits.append(when - cut)
            await page.evaluate("() => { window.got = 0; }")
    return waits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cuts", type=int, default=5)
    args = parser.parse_args()
    waits = asyncio.run(measure(args.cuts))
    print(f"EventSource back after a reset: median {statistics.median(waits):.3f} s, max {max(waits):.3f} s, "
          f"each: {' '.join(f'{w:.3f}' for w in waits)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
