"""Python asyncmcp 0.2.1 MCP client over webhooks, the reference peer for interop tests.

Usage:
    python py_webhook_client.py --server-url http://127.0.0.1:PORT/mcp/request [--timeout 60]

POSTs requests to --server-url and takes replies on a webhook of its own, served by
uvicorn on 127.0.0.1 (a free port) at /webhook/response and announced to the server in
`initialize` as `params._meta.webhookUrl` (asyncmcp's client refuses an initialize
without it; an application adds it, as this script does on the way out). It
initializes, lists tools, calls echo, calls a tool that does not exist, and calls
sleep {"ms": 200} with a progress callback, printing one JSON line per result:
    {"session": true}                 (the client learned a session id)
    {"tools": [...]}                  (sorted tool names)
    {"echo": "hello over webhooks"}
    {"error": {"code": C, "message": "..."}}  (the error of the unknown tool)
    {"progress": N}                   (progress notifications seen before sleep's result)
    {"sleep": "..."}
Exits 1 on any error or after --timeout seconds.
"""

import argparse
import socket
import sys
import uuid

import anyio
import mcp.types as types
import uvicorn
from mcp import ClientSession
from mcp.shared.exceptions import McpError
from starlette.applications import Starlette
from starlette.routing import Route

from asyncmcp.webhook import WebhookClientConfig, webhook_client
from peer import emit, first_text, run_client

WEBHOOK_PATH = "/webhook/response"


async def add_webhook_url(outgoing, write, webhook_url: str) -> None:
    """Forwards the session's messages, adding `_meta.webhookUrl` to `initialize`."""
    async with outgoing, write:
        async for session_message in outgoing:
            root = session_message.message.root
            if isinstance(root, types.JSONRPCRequest) and root.method == "initialize":
                params = root.params if root.params is not None else {}
                params.setdefault("_meta", {})["webhookUrl"] = webhook_url
                root.params = params
            await write.send(session_message)


async def run(server_url: str, timeout: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    webhook_url = f"http://127.0.0.1:{sock.getsockname()[1]}{WEBHOOK_PATH}"
    config = WebhookClientConfig(
        server_url=server_url,
        client_id=f"py-webhook-client-{uuid.uuid4().hex[:8]}",
        timeout_seconds=30,
    )
    with anyio.fail_after(timeout):
        async with webhook_client(config, WEBHOOK_PATH) as (read, write, client):
            callback = await client.get_webhook_callback()
            app = Starlette(routes=[Route(WEBHOOK_PATH, callback, methods=["POST"])])
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: server.serve(sockets=[sock]))
                while not server.started:
                    await anyio.sleep(0.02)
                session_write, outgoing = anyio.create_memory_object_stream(0)
                tg.start_soon(add_webhook_url, outgoing, write, webhook_url)
                await exercise(read, session_write, client)
                server.should_exit = True


async def exercise(read, write, client) -> None:
    async with ClientSession(read, write) as session:
        await session.initialize()
        emit({"session": client.transport.client_state.session_id is not None})
        tools = await session.list_tools()
        emit({"tools": sorted(t.name for t in tools.tools)})
        echo = await session.call_tool("echo", {"text": "hello over webhooks"})
        emit({"echo": first_text(echo, "echo")})
        try:
            missing = await session.call_tool("no-such-tool", {})
            # Some servers answer an unknown tool with an error result instead.
            if not missing.isError:
                raise RuntimeError(f"no-such-tool succeeded: {missing!r}")
            emit({"error": {"code": None, "message": str(missing.content)}})
        except McpError as error:
            emit({"error": {"code": error.error.code, "message": error.error.message}})
        seen = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(progress)

        sleep = await session.call_tool("sleep", {"ms": 200}, progress_callback=on_progress)
        emit({"progress": len(seen)})
        emit({"sleep": first_text(sleep, "sleep")})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", required=True, help="URL the server takes requests on")
    parser.add_argument("--timeout", type=float, default=60.0, help="overall timeout in seconds")
    args = parser.parse_args()
    return run_client("py_webhook_client", run, args.server_url, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
