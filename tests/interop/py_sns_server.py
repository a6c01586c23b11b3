"""Python asyncmcp 0.2.1 MCP server over SNS+SQS, the reference peer for interop tests.

Usage:
    AWS_ENDPOINT_URL=http://localhost:4566 python py_sns_server.py --request-queue-url URL

Reads MCP requests from --request-queue-url (the SQS queue subscribed to the request
topic; raw or enveloped SNS delivery both work) and answers by publishing to the SNS
topic each client names in its `initialize` request (`params.client_topic_arn`), as
asyncmcp does.
Tools:
    echo(text: str) -> text content equal to `text`
    add(a: number, b: number) -> text content of a + b ("5" for 2 and 3)
Prints READY on stdout (flushed) once it is polling; runs until SIGTERM or SIGINT.
AWS settings (endpoint, region, credentials) come from the usual AWS_* variables;
region and credentials default to us-east-1 and test/test.
"""

import argparse
import logging
import os
import signal
import sys

import anyio
import boto3
import mcp.types as types
from mcp.server.lowlevel import Server

from asyncmcp import SnsSqsServerConfig, SnsSqsSessionManager


def build_app() -> Server:
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


def aws_client(service: str):
    return boto3.client(
        service,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )


async def serve(request_queue_url: str) -> None:
    config = SnsSqsServerConfig(
        sqs_queue_url=request_queue_url,
        # Short long-polls so shutdown is quick; no sleep after an empty poll.
        wait_time_seconds=1,
        poll_interval_seconds=0,
    )
    manager = SnsSqsSessionManager(build_app(), config, aws_client("sqs"), aws_client("sns"))
    async with manager.run():
        print("READY", flush=True)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request-queue-url", required=True, help="queue fed by the request topic")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("PY_PEER_LOG", "WARNING"), stream=sys.stderr)
    anyio.run(serve, args.request_queue_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
