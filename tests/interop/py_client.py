"""Python asyncmcp 0.2.1 MCP client over SQS, the reference peer for interop tests.

Usage:
    AWS_ENDPOINT_URL=http://localhost:4566 python py_client.py \
        --server-queue-url URL --reply-queue-url URL [--timeout 60]

Sends requests to --server-queue-url and reads replies from --reply-queue-url
(announced to the server in `initialize` as `params.response_queue_url`). It
initializes, lists tools, calls echo {"text": "hello from python"} and add {"a": 2, "b": 3},
and prints one JSON line per result on stdout:
    {"tools": ["add", "echo"]}        (sorted tool names)
    {"echo": "hello from python"}     (text of the first content block)
    {"add": "5"}
Exits 1 on any error (including a tool result with isError) or after --timeout seconds.
AWS settings come from the usual AWS_* variables; region and credentials default
to us-east-1 and test/test.
"""

import argparse
import sys
import uuid

import anyio

from asyncmcp import SqsClientConfig, sqs_client
from peer import POLLING, aws_client, exercise, run_client


async def run(server_queue_url: str, reply_queue_url: str, timeout: float) -> None:
    config = SqsClientConfig(
        read_queue_url=server_queue_url,
        response_queue_url=reply_queue_url,
        client_id=f"py-interop-client-{uuid.uuid4().hex[:8]}",
        **POLLING,
    )
    with anyio.fail_after(timeout):
        async with sqs_client(config, aws_client("sqs")) as (read, write):
            await exercise(read, write)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server-queue-url", required=True, help="queue the server reads requests from")
    parser.add_argument("--reply-queue-url", required=True, help="queue this client reads replies from")
    parser.add_argument("--timeout", type=float, default=60.0, help="overall timeout in seconds")
    args = parser.parse_args()
    return run_client("py_client", run, args.server_queue_url, args.reply_queue_url, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
