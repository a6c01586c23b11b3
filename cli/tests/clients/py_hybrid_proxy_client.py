"""Python asyncmcp 0.2.1's StreamableHTTP+webhook client calling server-everything behind
`asyncmcp serve` and `asyncmcp proxy --listen --webhook-tools get-sum`.

Usage:
    python py_hybrid_proxy_client.py --server-url http://127.0.0.1:PORT/mcp [--timeout 60]

Speaks MCP Streamable HTTP to --server-url with `streamable_http_webhook_client`, which
names its webhook (uvicorn on 127.0.0.1, a free port, at /webhook) in `initialize` as
`params._meta.webhookUrl`. Initializes, lists tools, calls echo {"message": ...} and
get-sum {"a": 2, "b": 3}, then prints one JSON line per result:
    {"tools": [...]}                     (sorted tool names)
    {"echo": "Echo: ..."}
    {"sum": "The sum of 2 and 3 is 5."}
    {"statuses": {"echo": 200, "get-sum": 202}}  (HTTP status of each tools/call POST)
    {"webhook": [{"id": ..., "text": ...}, ...]}  (the responses that reached the webhook)
Exits 1 on any error or after --timeout seconds.
"""

import argparse
import json
import socket
import sys
import uuid

import anyio
import httpx
import mcp.types as types
import uvicorn
from asyncmcp.streamable_http_webhook import StreamableHTTPWebhookClientConfig
from asyncmcp.streamable_http_webhook.client import streamable_http_webhook_client
from mcp import ClientSession
from mcp.shared._httpx_utils import create_mcp_http_client
from starlette.applications import Starlette
from starlette.routing import Route

WEBHOOK_PATH = "/webhook"


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def first_text(result: types.CallToolResult, tool: str) -> str:
    if result.isError:
        raise RuntimeError(f"tool {tool} returned an error: {result.content!r}")
    for block in result.content:
        if isinstance(block, types.TextContent):
            return block.text
    raise RuntimeError(f"tool {tool} returned no text content: {result.content!r}")


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


def recording_webhook(callback, responses: list):
    """Wraps the client's webhook callback, noting each response that arrives."""

    async def route(request):
        body = json.loads(await request.body())
        if "method" not in body:
            content = (body.get("result") or {}).get("content") or [{}]
            responses.append({"id": body.get("id"), "text": content[0].get("text")})
        return await callback(request)

    return route


async def run(server_url: str, timeout: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = StreamableHTTPWebhookClientConfig(
        server_url=server_url,
        webhook_url=f"http://127.0.0.1:{sock.getsockname()[1]}{WEBHOOK_PATH}",
        client_id=f"py-hybrid-proxy-client-{uuid.uuid4().hex[:8]}",
        timeout_seconds=30,
    )
    statuses: dict = {}
    responses: list = []
    with anyio.fail_after(timeout):
        async with streamable_http_webhook_client(
            config, WEBHOOK_PATH, httpx_client_factory=recording_client_factory(statuses)
        ) as (read, write, client):
            callback = await client.get_webhook_callback()
            app = Starlette(
                routes=[Route(WEBHOOK_PATH, recording_webhook(callback, responses), methods=["POST"])]
            )
            server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: server.serve(sockets=[sock]))
                while not server.started:
                    await anyio.sleep(0.02)
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = await session.list_tools()
                    emit({"tools": sorted(t.name for t in tools.tools)})
                    echo = await session.call_tool("echo", {"message": "over the proxy"})
                    emit({"echo": first_text(echo, "echo")})
                    total = await session.call_tool("get-sum", {"a": 2, "b": 3})
                    emit({"sum": first_text(total, "get-sum")})
                server.should_exit = True
    emit({"statuses": statuses})
    emit({"webhook": responses})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-url", required=True, help="the server's Streamable HTTP URL")
    parser.add_argument("--timeout", type=float, default=60.0, help="overall timeout in seconds")
    args = parser.parse_args()
    try:
        anyio.run(run, args.server_url, args.timeout)
    except BaseException as exc:  # noqa: BLE001 - report anything, including exception groups
        if isinstance(exc, KeyboardInterrupt):
            raise
        print(f"py_hybrid_proxy_client: error: {exc!r}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
