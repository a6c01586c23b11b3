"""AWS's Python SQS extended client (amazon-sqs-extended-client) on one side
of the S3 offload interop test (tests/offload/).

    py_extended.py send QUEUE_URL BUCKET SIZE     sends a SIZE-byte body through S3
    py_extended.py receive QUEUE_URL BUCKET       receives one message, deleting it and its
                                                  object; prints what it got as JSON

The body is "0123456789abcdef" repeated to SIZE bytes, as the Rust side makes it.
"""

import json
import sys

import boto3
import sqs_extended_client  # noqa: F401  (patches boto3's Session)


def text(size):
    return ("0123456789abcdef" * (size // 16 + 1))[:size]


def client(bucket):
    sqs = boto3.session.Session().client("sqs")
    sqs.large_payload_support = bucket
    sqs.delete_payload_from_s3 = True
    return sqs


def main():
    command, queue_url, bucket = sys.argv[1:4]
    sqs = client(bucket)
    if command == "send":
        body = text(int(sys.argv[4]))
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=body,
            MessageAttributes={"From": {"DataType": "String", "StringValue": "python"}},
        )
        return
    for _ in range(20):
        got = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=1,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        )
        messages = got.get("Messages", [])
        if messages:
            message = messages[0]
            body = message["Body"]
            attributes = {
                name: value.get("StringValue")
                for name, value in message.get("MessageAttributes", {}).items()
            }
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            print(json.dumps({
                "length": len(body),
                "matches": body == text(len(body)),
                "attributes": attributes,
            }))
            return
    sys.exit("no message arrived")


if __name__ == "__main__":
    main()
