"""A stdio MCP server written with the Python MCP SDK 2.x (`MCPServer`), for
the `asyncmcp serve --tasks` tests. It knows nothing of tasks: `serve` makes
them.

Run: python task_server.py MARK_DIR   (speaks MCP on stdin/stdout)

Tools:
    slow(ms, steps, tag) -> "slept MS ms", after `steps` even steps, each
                            reporting progress with the message
                            "step I of STEPS"; when cancelled, it writes the
                            file MARK_DIR/cancelled-TAG before it stops
    fail(reason)         -> a tool error (isError: true) saying the reason
"""

import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

MARK_DIR = sys.argv[1] if len(sys.argv) > 1 else None

app = MCPServer("asyncmcp-serve-tasks")


@app.tool()
async def slow(ms: int, ctx: Context, steps: int = 4, tag: str = "slow") -> str:
    """Sleep for ms milliseconds in even steps, reporting progress."""
    steps = max(1, steps)
    try:
        for step in range(1, steps + 1):
            await anyio.sleep(ms / steps / 1000)
            await ctx.report_progress(step, steps, f"step {step} of {steps}")
    except anyio.get_cancelled_exc_class():
        if MARK_DIR:
            with open(os.path.join(MARK_DIR, f"cancelled-{tag}"), "w") as mark:
                mark.write("cancelled\n")
        raise
    return f"slept {ms} ms"


@app.tool()
def fail(reason: str) -> str:
    """Fail with a tool error."""
    raise ToolError(reason)


if __name__ == "__main__":
    app.run()
