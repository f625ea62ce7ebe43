"""A webhook receiver for the benchmarks, as cheap as HTTP/1.1 gets (raw asyncio, keep-alive):

    python -m bench.sink --port 9000

`POST /ok...` is answered 204 at once; `POST /hang...` is never answered (the connection is held
open), as a stuck subscriber would. `GET /health` answers 200.
"""

from __future__ import annotations

import argparse
import asyncio

_OK = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"
_HEALTH = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if length:
                await reader.readexactly(length)
            path = request_line.split(" ")[1] if " " in request_line else "/"
            if path.startswith("/hang"):
                await asyncio.Event().wait()  # until the client gives up and closes
            writer.write(_HEALTH if path.startswith("/health") else _OK)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
