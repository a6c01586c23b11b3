"""A stdio MCP server that misbehaves on purpose, for the fault tests of
`asyncmcp serve` (cli/tests/serve_faults.rs).

Runs with the Python MCP SDK 2.x. Its state outlives the process (serve
restarts it): every tool run appends a line `TAG PID` to `$FAULT_DIR/runs`,
so a test can count the runs of a call and see which process ran it.

Environment:
  FAULT_DIR      directory for the runs file and the crash markers (required)
  FAULT_GARBAGE  when `1`, lines that are not JSON-RPC are written to the
                 real stdout at startup and before each `echo` answer
"""

import os
import signal
import sys
from pathlib import Path

import anyio
from mcp.server.mcpserver import MCPServer

FAULT_DIR = Path(os.environ["FAULT_DIR"])
GARBAGE = os.environ.get("FAULT_GARBAGE") == "1"
# The SDK points fd 1 at stderr while it serves (stray prints miss the wire):
# a duplicate taken now still reaches the pipe serve reads.
WIRE = os.dup(1)

server = MCPServer("fault-server")


def record(tag: str) -> None:
    """Appends `TAG PID` to the runs file, in one write (several processes
    may append at once)."""
    line = f"{tag} {os.getpid()}\n".encode()
    fd = os.open(FAULT_DIR / "runs", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def garbage(where: str) -> None:
    os.write(WIRE, f"garbage {where}: this is not JSON-RPC\n".encode())
    os.write(WIRE, b'{"not": "a JSON-RPC message"}\n')


def die() -> None:
    """Ends this process the hard way, mid-call: no answer, no cleanup."""
    os.kill(os.getpid(), signal.SIGKILL)


@server.tool()
async def slow(seconds: float, tag: str) -> str:
    """Records a run, sleeps, and says which process ran it."""
    record(tag)
    await anyio.sleep(seconds)
    return f"{tag} ran on {os.getpid()}"


@server.tool()
async def hang() -> str:
    """Never answers; records `hang-cancelled` when it is cancelled."""
    record("hang")
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        record("hang-cancelled")
        raise
    return "unreachable"


@server.tool()
async def crash_once(tag: str) -> str:
    """Kills its own process on the first run for `tag`; answers after."""
    record(tag)
    marker = FAULT_DIR / f"crashed-{tag}"
    if not marker.exists():
        marker.touch()
        die()
    return f"{tag} survived on {os.getpid()}"


@server.tool()
async def crash_always(tag: str) -> str:
    """Kills its own process, every time."""
    record(tag)
    die()
    return "unreachable"


@server.tool()
async def pid() -> str:
    """The process id of this server."""
    return str(os.getpid())


@server.tool()
async def echo(text: str) -> str:
    """Returns `text` (after garbage on stdout, with FAULT_GARBAGE=1)."""
    record(f"echo-{text}")
    if GARBAGE:
        garbage("echo")
    return f"echo: {text}"


if __name__ == "__main__":
    if GARBAGE:
        garbage("startup")
    print(f"fault_server {os.getpid()} starting", file=sys.stderr, flush=True)
    server.run()
