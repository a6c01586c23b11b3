"""Python asyncmcp 0.2.1 MCP client over SNS+SQS, the reference peer for interop tests.

Usage:
    AWS_ENDPOINT_URL=http://localhost:4566 python py_sns_client.py \
        --request-topic-arn ARN --reply-queue-url URL --reply-topic-arn ARN [--timeout 60]

Publishes requests to --request-topic-arn and reads replies from --reply-queue-url,
which the caller has subscribed to --reply-topic-arn (raw or enveloped delivery).
The reply topic is announced to the server in `initialize` as `params.client_topic_arn`.
It makes the same calls and prints the same lines as py_client.py (peer.py: exercise).
Exits 1 on any error (including a tool result with isError) or after --timeout seconds.
AWS settings come from the usual AWS_* variables; region and credentials default
to us-east-1 and test/test.
"""

import argparse
import sys
import uuid

import anyio

from asyncmcp import SnsSqsClientConfig, sns_sqs_client
from peer import POLLING, aws_client, exercise, run_client


async def run(request_topic_arn: str, reply_queue_url: str, reply_topic_arn: str, timeout: float) -> None:
    config = SnsSqsClientConfig(
        sqs_queue_url=reply_queue_url,
        sns_topic_arn=request_topic_arn,
        client_id=f"py-interop-client-{uuid.uuid4().hex[:8]}",
        **POLLING,
    )
    sqs, sns = aws_client("sqs"), aws_client("sns")
    with anyio.fail_after(timeout):
        async with sns_sqs_client(config, sqs, sns, client_topic_arn=reply_topic_arn) as (read, write):
            await exercise(read, write)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--request-topic-arn", required=True, help="topic this client publishes requests to")
    parser.add_argument("--reply-queue-url", required=True, help="queue this client reads replies from")
    parser.add_argument("--reply-topic-arn", required=True, help="topic feeding --reply-queue-url")
    parser.add_argument("--timeout", type=float, default=60.0, help="overall timeout in seconds")
    args = parser.parse_args()
    return run_client(
        "py_sns_client", run, args.request_topic_arn, args.reply_queue_url, args.reply_topic_arn, args.timeout
    )


if __name__ == "__main__":
    sys.exit(main())
