"""Python asyncmcp 0.2.1 MCP server over SQS, the reference peer for interop tests.

Usage:
    AWS_ENDPOINT_URL=http://localhost:4566 python py_server.py --request-queue-url URL

Reads MCP requests from --request-queue-url and answers on the queue each client
names in its `initialize` request (`params.response_queue_url`), as asyncmcp does.
Tools (peer.py):
    echo(text: str) -> text content equal to `text`
    add(a: number, b: number) -> text content of a + b ("5" for 2 and 3)
Prints READY on stdout (flushed) once it is polling; runs until SIGTERM or SIGINT.
AWS settings (endpoint, region, credentials) come from the usual AWS_* variables;
region and credentials default to us-east-1 and test/test.
"""

import argparse
import sys

import anyio

from asyncmcp import SqsServerConfig, SqsSessionManager
from peer import POLLING, aws_client, build_app, serve_until_signal, setup_logging


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request-queue-url", required=True, help="queue this server reads requests from")
    args = parser.parse_args()
    setup_logging()
    config = SqsServerConfig(read_queue_url=args.request_queue_url, **POLLING)
    manager = SqsSessionManager(build_app(), config, aws_client("sqs"))
    anyio.run(serve_until_signal, manager)
    return 0


if __name__ == "__main__":
    sys.exit(main())
