"""What the Python asyncmcp 0.2.1 interop peers share: the demo MCP server app, AWS
clients from the environment, serving until a signal, and the client's call sequence.

Imported by py_server.py, py_sns_server.py, py_client.py and py_sns_client.py (Python puts
the script's own folder on the import path).
"""

import json
import logging
import os
import signal
import sys

import anyio
import boto3
import mcp.types as types
from mcp import ClientSession
from mcp.server.lowlevel import Server

# Short long polls so shutdown is quick, and no sleep after an empty poll (asyncmcp's
# default sleeps 5 s): the settings every peer passes to its asyncmcp config.
POLLING = {"wait_time_seconds": 1, "poll_interval_seconds": 0}


def setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("PY_PEER_LOG", "WARNING"), stream=sys.stderr)


def aws_client(service: str):
    """A boto3 client from the AWS_* variables; region and credentials default to
    us-east-1 and test/test."""
    return boto3.client(
        service,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )


def build_app() -> Server:
    """The demo server: echo(text) -> text; add(a, b) -> a + b ("5" for 2 and 3)."""
    app = Server("asyncmcp-py-interop-server")

    @app.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [
            types.Tool(
                name="echo",
                description="Return the given text unchanged",
                inputSchema={
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                },
            ),
            types.Tool(
                name="add",
                description="Add two numbers",
                inputSchema={
                    "type": "object",
                    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                    "required": ["a", "b"],
                },
            ),
        ]

    @app.call_tool()
    async def call_tool(name: str, arguments: dict) -> list[types.TextContent]:
        if name == "echo":
            return [types.TextContent(type="text", text=str(arguments["text"]))]
        if name == "add":
            total = arguments["a"] + arguments["b"]
            if isinstance(total, float) and total.is_integer():
                total = int(total)
            return [types.TextContent(type="text", text=str(total))]
        raise ValueError(f"unknown tool: {name}")

    return app


async def serve_until_signal(manager) -> None:
    """Runs an asyncmcp session manager, prints READY once it polls, until SIGTERM/SIGINT."""
    async with manager.run():
        print("READY", flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def first_text(result: types.CallToolResult, tool: str) -> str:
    if result.isError:
        raise RuntimeError(f"tool {tool} returned an error: {result.content!r}")
    for block in result.content:
        if isinstance(block, types.TextContent):
            return block.text
    raise RuntimeError(f"tool {tool} returned no text content: {result.content!r}")


async def exercise(read, write) -> None:
    """Initializes, lists tools, calls echo and add, and prints one JSON line per result:
    {"tools": [...sorted names]}, {"echo": "hello from python"}, {"add": "5"}."""
    async with ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        emit({"tools": sorted(t.name for t in tools.tools)})
        echo = await session.call_tool("echo", {"text": "hello from python"})
        emit({"echo": first_text(echo, "echo")})
        add = await session.call_tool("add", {"a": 2, "b": 3})
        emit({"add": first_text(add, "add")})


def run_client(name: str, run, *args) -> int:
    """Runs `run(*args)` under anyio; reports any error on stderr and returns the exit code."""
    setup_logging()
    try:
        anyio.run(run, *args)
    except BaseException as exc:  # noqa: BLE001 - report anything, including exception groups
        if isinstance(exc, KeyboardInterrupt):
            raise
        print(f"{name}: error: {exc!r}", file=sys.stderr, flush=True)
        return 1
    return 0
