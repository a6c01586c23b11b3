"""The Python asyncmcp 0.2.1 client (`mcp.ClientSession` over `asyncmcp.sqs_client`)
calling a server-everything behind `asyncmcp serve`, for the `asyncmcp serve` tests.

Usage:
    python py_asyncmcp_client.py --server-queue-url URL --reply-queue-url URL \
        (--message TEXT | --tool NAME --arguments JSON [--calls N]) [--timeout 60]

Initializes, lists the tools, then calls echo {"message": TEXT}, or calls NAME N times
(one after the other, in the one session) with JSON, where each `{i}` in a string value
becomes the call's number (0 to N-1). Prints one JSON line per result on stdout:
    {"server": "<serverInfo.name>"}
    {"tools": [...]}            (sorted tool names)
    {"echo": "Echo: TEXT"}      (text of the first content block), or per call
    {"call": i, "text": "..."}
Exits 1 on any error (including a tool result with isError) or after --timeout seconds.
AWS settings come from the AWS_* variables.
"""

import argparse
import json
import os
import sys
import uuid

import anyio
import boto3
import mcp.types as types
from asyncmcp import SqsClientConfig, sqs_client
from mcp import ClientSession


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def first_text(result: types.CallToolResult) -> str:
    if result.isError:
        raise RuntimeError(f"the tool returned an error: {result.content!r}")
    for block in result.content:
        if isinstance(block, types.TextContent):
            return block.text
    raise RuntimeError(f"the tool returned no text: {result.content!r}")


async def run(args: argparse.Namespace) -> None:
    sqs = boto3.client(
        "sqs",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
    )
    config = SqsClientConfig(
        read_queue_url=args.server_queue_url,
        response_queue_url=args.reply_queue_url,
        client_id=f"py-serve-client-{uuid.uuid4().hex[:8]}",
        # asyncmcp sleeps 5 s after an empty poll by default.
        wait_time_seconds=1,
        poll_interval_seconds=0,
    )
    with anyio.fail_after(args.timeout):
        async with sqs_client(config, sqs) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                emit({"server": init.serverInfo.name})
                tools = await session.list_tools()
                emit({"tools": sorted(tool.name for tool in tools.tools)})
                if args.tool is None:
                    echo = await session.call_tool("echo", {"message": args.message})
                    emit({"echo": first_text(echo)})
                    return
                for i in range(args.calls):
                    arguments = numbered(json.loads(args.arguments), i)
                    result = await session.call_tool(args.tool, arguments)
                    emit({"call": i, "text": first_text(result)})


def numbered(arguments: dict, i: int) -> dict:
    """`arguments` with `{i}` in each string value replaced by `i`."""
    return {
        key: value.replace("{i}", str(i)) if isinstance(value, str) else value
        for key, value in arguments.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-queue-url", required=True)
    parser.add_argument("--reply-queue-url", required=True)
    parser.add_argument("--message")
    parser.add_argument("--tool")
    parser.add_argument("--arguments", default="{}")
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    if (args.message is None) == (args.tool is None):
        parser.error("give exactly one of --message and --tool")
    try:
        anyio.run(run, args)
    except BaseException as exc:  # noqa: BLE001 - report anything, exception groups included
        if isinstance(exc, KeyboardInterrupt):
            raise
        print(f"py_asyncmcp_client: error: {exc!r}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
