"""A stdio MCP server written with the Python MCP SDK 2.x (`MCPServer`), for
the `asyncmcp serve --tool-limit` tests. It knows nothing of limits.

Run: python limit_server.py MARK_DIR   (speaks MCP on stdin/stdout)

Tools:
    hold(ms, tag) -> "held MS ms", after writing MARK_DIR/start-TAG and,
                     once it has slept, MARK_DIR/end-TAG, each holding the
                     time (nanoseconds of this process's monotonic clock)
"""

import os
import sys
import time

import anyio
from mcp.server.mcpserver import MCPServer

MARK_DIR = sys.argv[1]

app = MCPServer("asyncmcp-serve-limits")


def mark(name: str) -> None:
    with open(os.path.join(MARK_DIR, name), "w") as file:
        file.write(f"{time.monotonic_ns()}\n")


@app.tool()
async def hold(ms: int, tag: str) -> str:
    """Sleep for ms milliseconds, marking its start and end."""
    mark(f"start-{tag}")
    await anyio.sleep(ms / 1000)
    mark(f"end-{tag}")
    return f"held {ms} ms"


if __name__ == "__main__":
    app.run()
