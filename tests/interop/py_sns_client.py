"""Python asyncmcp 0.2.1 MCP client over SNS+SQS, the reference peer for interop tests.

Usage:
    AWS_ENDPOINT_URL=http://localhost:4566 python py_sns_client.py \
        --request-topic-arn ARN --reply-queue-url URL --reply-topic-arn ARN [--timeout 60]

Publishes requests to --request-topic-arn and reads replies from --reply-queue-url,
which the caller has subscribed to --reply-topic-arn (raw or enveloped delivery).
The reply topic is announced to the server in `initialize` as `params.client_topic_arn`.
It initializes, lists tools, calls echo {"text": "hello from python"} and add {"a": 2, "b": 3},
and prints one JSON line per result on stdout:
    {"tools": ["add", "echo"]}        (sorted tool names)
    {"echo": "hello from python"}     (text of the first content block)
    {"add": "5"}
Exits 1 on any error (including a tool result with isError) or after --timeout seconds.
AWS settings come from the usual AWS_* variables; region and credentials default
to us-east-1 and test/test.
"""

import argparse
import json
import logging
import os
import sys
import uuid

import anyio
import boto3
import mcp.types as types
from mcp import ClientSession

from asyncmcp import SnsSqsClientConfig, sns_sqs_client


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def first_text(result: types.CallToolResult, tool: str) -> str:
    if result.isError:
        raise RuntimeError(f"tool {tool} returned an error: {result.content!r}")
    for block in result.content:
        if isinstance(block, types.TextContent):
            return block.text
    raise RuntimeError(f"tool {tool} returned no text content: {result.content!r}")


def aws_client(service: str):
    return boto3.client(
        service,
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )


async def run(request_topic_arn: str, reply_queue_url: str, reply_topic_arn: str, timeout: float) -> None:
    config = SnsSqsClientConfig(
        sqs_queue_url=reply_queue_url,
        sns_topic_arn=request_topic_arn,
        client_id=f"py-interop-client-{uuid.uuid4().hex[:8]}",
        # Short long-polls so shutdown is quick; no sleep after an empty poll.
        wait_time_seconds=1,
        poll_interval_seconds=0,
    )
    with anyio.fail_after(timeout):
        sqs, sns = aws_client("sqs"), aws_client("sns")
        async with sns_sqs_client(config, sqs, sns, client_topic_arn=reply_topic_arn) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                emit({"tools": sorted(t.name for t in tools.tools)})
                echo = await session.call_tool("echo", {"text": "hello from python"})
                emit({"echo": first_text(echo, "echo")})
                add = await session.call_tool("add", {"a": 2, "b": 3})
                emit({"add": first_text(add, "add")})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request-topic-arn", required=True, help="topic this client publishes requests to")
    parser.add_argument("--reply-queue-url", required=True, help="queue this client reads replies from")
    parser.add_argument("--reply-topic-arn", required=True, help="topic feeding --reply-queue-url")
    parser.add_argument("--timeout", type=float, default=60.0, help="overall timeout in seconds")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("PY_PEER_LOG", "WARNING"), stream=sys.stderr)
    try:
        anyio.run(run, args.request_topic_arn, args.reply_queue_url, args.reply_topic_arn, args.timeout)
    except BaseException as exc:  # noqa: BLE001 - report anything, including exception groups
        if isinstance(exc, KeyboardInterrupt):
            raise
        print(f"py_sns_client: error: {exc!r}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
