"""`python bench/slow_reader.py`: a bounded measurement: what a client that stops reading costs the proxy (issue 16).

One stream of ~300,000 small events (10 MiB) through the proxy (in this process, uvicorn + httptools) from the mock
upstream; the client sends its request, reads 12 bytes, and never reads again. Once the proxy's writes stall,
it prints the proxy socket's user-space write buffer (asyncio transport), its kernel send queue (SIOCOUTQ),
and the client's kernel receive queue (FIONREAD). Loopback only; ends in ~10 s."""
import asyncio, fcntl, json, socket, struct, sys, termios
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import uvicorn
from llm_sse_proxy.proxy.app import create_app
from tests.upstream_fixtures import mock_upstream, upstream_config

SIOCOUTQ = termios.TIOCOUTQ

def queued(sock, request):
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0"))[0]

async def main(rcvbuf):
    async with mock_upstream() as up:
        config = upstream_config([up.model("gpt", "gpt+chunk_chars=2")], limits={"max_chars": 1_000_000}, server={"max_body_bytes": 2_000_000})
        server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=0, log_level="warning"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        body = json.dumps({"messages": [{"role": "user", "content": "echo:" + "abcdefghij" * 60000}]}).encode()
        client = socket.socket()
        if rcvbuf:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(client, ("127.0.0.1", port))
        await loop.sock_sendall(client, b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await loop.sock_recv(client, 12)
        previous = None
        for _ in range(100):  # until the figures stop moving (at most 10 s)
            await asyncio.sleep(0.1)
            [conn] = list(server.server_state.connections)
            transport = conn.transport
            sock = transport.get_extra_info("socket")
            now = (transport.get_write_buffer_size(), queued(sock, SIOCOUTQ), queued(client, termios.FIONREAD))
            if now == previous:
                break
            previous = now
        user, kernel_send, client_recv = now
        print(f"client SO_RCVBUF={rcvbuf or 'default'}: proxy user-space buffer {user/1024:.0f} KiB, "
              f"proxy kernel send queue {kernel_send/1024:.0f} KiB (proxy total {(user+kernel_send)/1024:.0f} KiB), "
              f"client kernel receive queue {client_recv/1024:.0f} KiB; proxy SO_SNDBUF={sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)//1024} KiB")
        client.close()
        server.should_exit = True
        await task

for rcvbuf in (None, 4096):
    asyncio.run(main(rcvbuf))
