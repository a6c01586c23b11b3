"""Python asyncmcp 0.2.1 StreamableHTTP+webhook client, the reference peer for the hybrid.

Usage:
    python py_hybrid_client.py --server-url http://127.0.0.1:PORT/mcp [--timeout 60]

Speaks MCP Streamable HTTP to --server-url with asyncmcp's
`streamable_http_webhook_client`, which names its webhook (served by uvicorn on
127.0.0.1, a free port, at /webhook) in `initialize` as `params._meta.webhookUrl`.
The server is expected to answer `add`, `fail`, `hash` and `sleep` at the webhook and
`echo` on the POST's stream. It initializes, lists tools, calls echo, add, fail (an
isError result), hash with too many rounds (a JSON-RPC error) and sleep {"ms": 200}
with a progress callback, printing one JSON line per result:
    {"session": true}                       (the client learned a session id)
    {"tools": [...]}                        (sorted tool names)
    {"echo": "hello over the hybrid"}
    {"add": "5"}
    {"fail": {"isError": true, "text": "boom"}}
    {"error": {"code": C, "message": "..."}}  (hash's JSON-RPC error)
    {"progress": N}                         (progress callbacks before sleep's result)
    {"sleep": "..."}
    {"statuses": {"echo": 200, "add": 202, ...}}  (HTTP status of each tools/call POST)
    {"webhook": ["response", "notifications/progress", ...]}  (what reached the webhook, in order)
    {"webhook_sessions": ["<mcp-session-id>", ...]}  (the session header of each delivery)
    {"session_id": "..."}
Exits 1 on any error or after --timeout seconds.
"""

import argparse
import json
import socket
import sys
import uuid

import anyio
import httpx
import uvicorn
from mcp import ClientSession
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import McpError
from starlette.applications import Starlette
from starlette.routing import Route

from asyncmcp.streamable_http_webhook import StreamableHTTPWebhookClientConfig
from asyncmcp.streamable_http_webhook.client import streamable_http_webhook_client
from peer import emit, first_text, run_client

WEBHOOK_PATH = "/webhook"


def recording_client_factory(statuses: dict):
    """An httpx client factory whose clients record the status of each tools/call POST."""

    async def record(response: httpx.Response) -> None:
        request = response.request
        if request.method != "POST":
            return
        try:
            body = json.loads(request.content)
        except (ValueError, httpx.RequestNotRead):
            return
        if isinstance(body, dict) and body.get("method") == "tools/call":
            statuses[body["params"]["name"]] = response.status_code

    def factory(headers=None, timeout=None, auth=None) -> httpx.AsyncClient:
        client = create_mcp_http_client(headers=headers, timeout=timeout, auth=auth)
        client.event_hooks["response"].append(record)
        return client

    return factory


def recording_webhook(callback, arrivals: list, sessions: list):
    """Wraps the client's webhook callback, noting what arrives, in order."""

    async def route(request):
        body = json.loads(await request.body())
        arrivals.append(body.get("method", "response"))
        sessions.append(request.headers.get("mcp-session-id"))
        return await callback(request)

    return route


async def run(server_url: str, timeout: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    webhook_url = f"http://127.0.0.1:{sock.getsockname()[1]}{WEBHOOK_PATH}"
    config = StreamableHTTPWebhookClientConfig(
        server_url=server_url,
        webhook_url=webhook_url,
        client_id=f"py-hybrid-client-{uuid.uuid4().hex[:8]}",
        timeout_seconds=30,
    )
    statuses: dict = {}
    arrivals: list = []
    sessions: list = []
    with anyio.fail_after(timeout):
        async with streamable_http_webhook_client(
            config, WEBHOOK_PATH, httpx_client_factory=recording_client_factory(statuses)
        ) as (read, write, client):
            callback = await client.get_webhook_callback()
            route = recording_webhook(callback, arrivals, sessions)
            app = Starlette(routes=[Route(WEBHOOK_PATH, route, methods=["POST"])])
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: server.serve(sockets=[sock]))
                while not server.started:
                    await anyio.sleep(0.02)
                await exercise(read, write, client)
                server.should_exit = True
    emit({"statuses": statuses})
    emit({"webhook": arrivals})
    emit({"webhook_sessions": sessions})


async def exercise(read, write, client) -> None:
    async with ClientSession(read, write) as session:
        await session.initialize()
        emit({"session": client.transport.session_id is not None})
        emit({"session_id": client.transport.session_id})
        tools = await session.list_tools()
        emit({"tools": sorted(t.name for t in tools.tools)})
        echo = await session.call_tool("echo", {"text": "hello over the hybrid"})
        emit({"echo": first_text(echo, "echo")})
        add = await session.call_tool("add", {"a": 2, "b": 3})
        emit({"add": first_text(add, "add")})
        fail = await session.call_tool("fail", {"message": "boom"})
        emit({"fail": {"isError": bool(fail.isError), "text": fail.content[0].text}})
        try:
            result = await session.call_tool("hash", {"data": "x", "rounds": 20000000})
            raise RuntimeError(f"hash with too many rounds succeeded: {result!r}")
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
    parser.add_argument("--server-url", required=True, help="the server's Streamable HTTP URL")
    parser.add_argument("--timeout", type=float, default=60.0, help="overall timeout in seconds")
    args = parser.parse_args()
    return run_client("py_hybrid_client", run, args.server_url, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
