"""WebSocket peers for the proxy tests, from the `websockets` library
(Debian's python3-websockets).

  ws.py server unix PATH   echo server on a Unix socket; prints "listening"
  ws.py server tcp         echo server on 127.0.0.1, any port; prints
                           "listening PORT"
  ws.py client URI [PATH]  talks to URI (over the Unix socket PATH if given)
                           and prints "ok" when every check passed

The client sends text, binary and a 4 MiB message and expects each back
unchanged; then asks the server to close (1000, "bye") and waits until
the server's TCP close reaches it, with no time limit of its own: a proxy
that loses the end of the stream makes it hang. A second connection is
closed by the client, which must see the server's close frame and the end
of the stream the same way.
"""

import asyncio
import os
import sys

import websockets

BIG = os.urandom(4 << 20)
# Waiting for the other side's TCP close is the check: never give up on it.
FOREVER = 3600


async def echo(ws, *_path):
    try:
        async for message in ws:
            if message == "close-please":
                await ws.close(1000, "bye")
                return
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def serve(kind, path=None):
    if kind == "unix":
        server = await websockets.unix_serve(echo, path, max_size=None)
        print("listening", flush=True)
    else:
        server = await websockets.serve(echo, "127.0.0.1", 0, max_size=None)
        port = server.sockets[0].getsockname()[1]
        print(f"listening {port}", flush=True)
    await server.wait_closed()


def connect(uri, path):
    options = {"max_size": None, "close_timeout": FOREVER}
    if path:
        return websockets.unix_connect(path, uri, **options)
    return websockets.connect(uri, **options)


async def client(uri, path=None):
    async with connect(uri, path) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello", "text came back changed"
        await ws.send(bytes(range(256)))
        assert await ws.recv() == bytes(range(256)), "binary came back changed"
        await ws.send(BIG)
        assert await ws.recv() == BIG, "the 4 MiB message came back changed"
        await ws.send("close-please")
        try:
            await ws.recv()
            raise AssertionError("the server sent a message instead of closing")
        except websockets.ConnectionClosedOK:
            pass
        await ws.wait_closed()
        assert ws.close_code == 1000, f"close code {ws.close_code}"
        assert ws.close_reason == "bye", f"close reason {ws.close_reason!r}"
    ws = await connect(uri, path)
    await ws.send("one more")
    assert await ws.recv() == "one more"
    await ws.close(1000, "done")
    await ws.wait_closed()
    assert ws.close_code == 1000, f"close code {ws.close_code} after the client closed"
    print("ok", flush=True)


def main():
    role = sys.argv[1]
    if role == "server":
        asyncio.run(serve(*sys.argv[2:]))
    else:
        asyncio.run(client(*sys.argv[2:]))


if __name__ == "__main__":
    main()
