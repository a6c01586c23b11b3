"""An MCP client built on the Python MCP SDK 2.x, run by cli/tests/proxy.rs.

Usage: mcp2_client.py COMMAND ARGS...
       mcp2_client.py --http URL

Starts COMMAND ARGS as a stdio MCP server (the proxy), with the AWS_* and
ASYNCMCP_* variables of this process passed on (the SDK passes only a safe
few by default), or connects to the Streamable HTTP server at URL; then
prints one JSON object on stdout: the tool names, the text echo answered,
the text of trigger-long-running-operation and the progress notifications
it sent, as the SDK's progress callback saw them.
"""

import json
import os
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


def connect(command: list[str]):
    """The client transport: over HTTP with `--http URL`, else stdio."""
    if command[0] == "--http":
        return streamable_http_client(command[1])
    env = {
        key: value
        for key, value in os.environ.items()
        if key.startswith(("AWS_", "ASYNCMCP_"))
    }
    return stdio_client(StdioServerParameters(command=command[0], args=command[1:], env=env))


async def main(command: list[str]) -> None:
    progress: list[dict] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append({"progress": done, "total": total, "message": message})

    async with connect(command) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            echo = await session.call_tool("echo", {"message": "hello from mcp 2"})
            long = await session.call_tool(
                "trigger-long-running-operation",
                {"duration": 2, "steps": 4},
                progress_callback=on_progress,
            )
            # The SDK runs progress callbacks beside the response it resolves,
            # so the last update can land just after the result: wait for it
            # (briefly) before the session closes. A missing update still fails.
            with anyio.move_on_after(2):
                while not progress or progress[-1]["progress"] < (progress[-1]["total"] or 0):
                    await anyio.sleep(0.02)
    print(
        json.dumps(
            {
                "tools": [tool.name for tool in tools.tools],
                "echo": echo.content[0].text,
                "long": long.content[0].text,
                "progress": progress,
            }
        )
    )


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
