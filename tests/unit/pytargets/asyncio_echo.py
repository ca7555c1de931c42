"""An asyncio TCP echo server for tests/unit/test_real_servers.py: `python3 asyncio_echo.py
OUTFILE PORT` listens on 127.0.0.1:PORT, echoes every byte back on each connection, and writes
"ready" to OUTFILE once listening.  It counts the bytes it echoed in OUTFILE.progress."""

import asyncio
import os
import sys


async def main(out, port):
    progress = os.open(out + ".progress", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    echoed = 0

    async def echo(reader, writer):
        nonlocal echoed
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
            echoed += len(data)
            os.pwrite(progress, b"%20d\n" % echoed, 0)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", port)
    with open(out, "a") as f:
        f.write("ready\n")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
