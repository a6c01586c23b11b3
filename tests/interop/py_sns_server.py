"""Python asyncmcp 0.2.1 MCP server over SNS+SQS, the reference peer for interop tests.

Usage:
    AWS_ENDPOINT_URL=http://localhost:4566 python py_sns_server.py --request-queue-url URL

Reads MCP requests from --request-queue-url (the SQS queue subscribed to the request
topic; raw or enveloped SNS delivery both work) and answers by publishing to the SNS
topic each client names in its `initialize` request (`params.client_topic_arn`), as
asyncmcp does. Tools as py_server.py (peer.py).
Prints READY on stdout (flushed) once it is polling; runs until SIGTERM or SIGINT.
AWS settings (endpoint, region, credentials) come from the usual AWS_* variables;
region and credentials default to us-east-1 and test/test.
"""

import argparse
import sys

import anyio

from asyncmcp import SnsSqsServerConfig, SnsSqsSessionManager
from peer import POLLING, aws_client, build_app, serve_until_signal, setup_logging


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request-queue-url", required=True, help="queue fed by the request topic")
    args = parser.parse_args()
    setup_logging()
    config = SnsSqsServerConfig(sqs_queue_url=args.request_queue_url, **POLLING)
    manager = SnsSqsSessionManager(build_app(), config, aws_client("sqs"), aws_client("sns"))
    anyio.run(serve_until_signal, manager)
    return 0


if __name__ == "__main__":
    sys.exit(main())
