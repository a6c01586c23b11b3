"""Python asyncmcp 0.2.1 MCP server over webhooks, the reference peer for webhook interop tests.

Usage:
    python py_webhook_server.py

Listens on 127.0.0.1 on a free port, takes MCP requests as POSTs to /mcp/request (DELETE there
ends a session) and POSTs every reply to the webhookUrl each client names in its `initialize`
(`params._meta.webhookUrl`), as asyncmcp's WebhookSessionManager does. Tools (peer.py):
    echo(text: str) -> text content equal to `text`
    add(a: number, b: number) -> text content of a + b ("5" for 2 and 3)
    any other name -> a tool error ("unknown tool: NAME")
Prints `READY http://127.0.0.1:PORT/mcp/request` on stdout (flushed) once it listens; runs
until SIGTERM or SIGINT.
"""

import socket
import sys

import anyio
import uvicorn

from asyncmcp import WebhookServerConfig
from asyncmcp.webhook.manager import WebhookSessionManager
from peer import build_app, setup_logging

PATH = "/mcp/request"


async def serve() -> None:
    manager = WebhookSessionManager(build_app(), WebhookServerConfig(timeout_seconds=10), server_path=PATH)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # uvicorn handles SIGTERM/SIGINT itself: serve() returns once one arrives.
    server = uvicorn.Server(uvicorn.Config(manager.asgi_app(), log_level="warning", lifespan="off"))
    async with manager.run():
        async with anyio.create_task_group() as tg:

            async def announce() -> None:
                while not server.started:
                    await anyio.sleep(0.02)
                print(f"READY http://127.0.0.1:{port}{PATH}", flush=True)

            tg.start_soon(announce)
            await server.serve(sockets=[sock])
            tg.cancel_scope.cancel()


def main() -> int:
    setup_logging()
    anyio.run(serve)
    return 0


if __name__ == "__main__":
    sys.exit(main())
