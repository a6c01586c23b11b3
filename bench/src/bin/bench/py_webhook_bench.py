"""The Python side of the webhook benchmark: Python asyncmcp 0.2.1's webhook transport as server or client.

The Rust benchmark (`--scenario webhook`) starts this script as a child process and drives it over
the line protocol of py_bench.py (same directory), whose helpers, echo server and call loop it
reuses, so the two Python drivers measure the same way.

Usage:
    py_webhook_bench.py server
    py_webhook_bench.py client --server-url http://127.0.0.1:PORT/mcp/request

Settings: asyncmcp's WebhookServerConfig and WebhookClientConfig keep the library's defaults
(0.2.1: timeout_seconds=30, no retries); only the client's server_url is set. Everything listens
on 127.0.0.1 on free ports (uvicorn, as asyncmcp's docs and tests/interop/py_webhook_*.py do).
PY_BENCH_LOG sets the log level (default WARNING). Logs go to stderr only. No AWS is involved, so
"api_calls" is always 0.

server mode
    Serves py_bench's echo server through asyncmcp's WebhookSessionManager, taking requests as
    POSTs to /mcp/request and POSTing replies to each client's webhookUrl.
    out  {"ready": true, "url": "http://127.0.0.1:PORT/mcp/request"}   once uvicorn listens
    in   {"cmd": "stats"}            ->   {"api_calls": 0}
    stdin EOF or SIGTERM/SIGINT: stops and exits 0.

client mode
    Connects with asyncmcp.webhook.webhook_client + mcp.ClientSession, its replies taken by a
    uvicorn receiver at /webhook/response whose URL the `initialize` request carries as
    `params._meta.webhookUrl` (asyncmcp's client requires the application to add it, as
    tests/interop/py_webhook_client.py does); initializes, lists tools, warms up with 20 echo
    calls, 10 at a time, then answers "run" and "stats" as py_bench.py's client does:
    out  {"ready": true}
    in   {"cmd": "run", "calls": N, "in_flight": K}
    out  {"elapsed_s": ..., "latencies_ms": [...], "errors": ..., "api_calls": 0}
    stdin EOF or SIGTERM/SIGINT: closes the session and exits 0.
    If connecting or initializing fails it prints {"error": "..."} and exits 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import uuid

import anyio
import mcp.types as types
import uvicorn
from mcp import ClientSession
from starlette.applications import Starlette
from starlette.routing import Route

from asyncmcp.webhook import WebhookClientConfig, WebhookServerConfig, webhook_client
from asyncmcp.webhook.manager import WebhookSessionManager
from py_bench import (
    CALL_TIMEOUT_S,
    WARMUP_CALLS,
    WARMUP_IN_FLIGHT,
    arm_exit_watchdog,
    build_app,
    emit,
    parse_command,
    positive_int,
    run_level,
    start_stdin_reader,
    wait_for_signal,
)

log = logging.getLogger("py_webhook_bench")

SERVER_PATH = "/mcp/request"
WEBHOOK_PATH = "/webhook/response"


def listening_socket() -> socket.socket:
    """A socket bound to a free port on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


async def serve_until_stopped(server: uvicorn.Server, sock: socket.socket, tg) -> None:
    """Starts `server` on `sock` in `tg` and returns once it listens."""
    tg.start_soon(lambda: server.serve(sockets=[sock]))
    while not server.started:
        await anyio.sleep(0.02)


async def commands(stream, run_level_of) -> None:
    """Answers "stats" (always 0 API calls) and, for clients, "run"."""
    async with stream:
        async for line in stream:
            try:
                cmd = parse_command(line)
                if cmd is None:
                    continue
                if cmd["cmd"] == "stats":
                    emit({"api_calls": 0})
                elif cmd["cmd"] == "run" and run_level_of is not None:
                    calls = positive_int(cmd, "calls", 0)
                    in_flight = positive_int(cmd, "in_flight", 1)
                    level = await run_level_of(calls, in_flight)
                    level["api_calls"] = 0
                    emit(level)
                else:
                    raise ValueError(f"unknown command {cmd['cmd']!r}")
            except ValueError as exc:
                emit({"error": str(exc)})
    log.info("stdin closed: stopping")


# --- server --------------------------------------------------------------------------------------


async def run_server(_args: argparse.Namespace) -> int:
    manager = WebhookSessionManager(build_app(), WebhookServerConfig(), server_path=SERVER_PATH)
    sock = listening_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}{SERVER_PATH}"
    server = uvicorn.Server(uvicorn.Config(manager.asgi_app(), log_level="warning", lifespan="off"))
    stop = anyio.Event()
    async with manager.run():
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_signal, stop)
            await serve_until_stopped(server, sock, tg)
            emit({"ready": True, "url": url})

            async def commands_then_stop() -> None:
                await commands(start_stdin_reader(), None)
                stop.set()

            tg.start_soon(commands_then_stop)
            await stop.wait()
            arm_exit_watchdog(0)
            server.should_exit = True
            tg.cancel_scope.cancel()
    return 0


# --- client --------------------------------------------------------------------------------------


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


async def run_client(args: argparse.Namespace) -> int:
    sock = listening_socket()
    webhook_url = f"http://127.0.0.1:{sock.getsockname()[1]}{WEBHOOK_PATH}"
    config = WebhookClientConfig(server_url=args.server_url, client_id=f"py-bench-{uuid.uuid4().hex[:8]}")
    stop = anyio.Event()
    status = 0
    async with webhook_client(config, WEBHOOK_PATH) as (read, write, client):
        callback = await client.get_webhook_callback()
        app = Starlette(routes=[Route(WEBHOOK_PATH, callback, methods=["POST"])])
        receiver = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_for_signal, stop)
            await serve_until_stopped(receiver, sock, tg)
            session_write, outgoing = anyio.create_memory_object_stream(0)
            tg.start_soon(add_webhook_url, outgoing, write, webhook_url)
            async with ClientSession(read, session_write) as session:
                try:
                    with anyio.fail_after(CALL_TIMEOUT_S):
                        await session.initialize()
                        tools = await session.list_tools()
                    names = sorted(tool.name for tool in tools.tools)
                    if "echo" not in names:
                        raise RuntimeError(f"server does not list echo (tools: {names})")
                except Exception as exc:  # noqa: BLE001 - report, then leave with status 1
                    emit({"error": f"client setup failed: {exc!r}"})
                    status = 1
                    arm_exit_watchdog(status)
                else:
                    warmup = await run_level(session, WARMUP_CALLS, WARMUP_IN_FLIGHT)
                    if warmup["errors"]:
                        log.warning("warm-up: %d of %d calls failed", warmup["errors"], WARMUP_CALLS)
                    emit({"ready": True})

                    async def level(calls: int, in_flight: int) -> dict:
                        return await run_level(session, calls, in_flight)

                    async def commands_then_stop() -> None:
                        await commands(start_stdin_reader(), level)
                        stop.set()

                    tg.start_soon(commands_then_stop)
                    await stop.wait()
                    arm_exit_watchdog(0)
            receiver.should_exit = True
            tg.cancel_scope.cancel()
    return status


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    modes = parser.add_subparsers(dest="mode", required=True)
    modes.add_parser("server", help="serve echo over webhooks with WebhookSessionManager")
    client = modes.add_parser("client", help="call echo over webhooks with webhook_client + ClientSession")
    client.add_argument("--server-url", required=True, help="URL the server takes requests on")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("PY_BENCH_LOG", "WARNING").upper(),
        stream=sys.stderr,
        format="%(asctime)s py_webhook_bench[" + args.mode + "] %(levelname)s %(name)s: %(message)s",
    )
    runner = run_server if args.mode == "server" else run_client
    try:
        return anyio.run(runner, args)
    except KeyboardInterrupt:
        return 0
    except BaseException as exc:  # noqa: BLE001 - report anything, including exception groups
        log.error("fatal: %r", exc, exc_info=True)
        emit({"error": f"fatal: {exc!r}"})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
