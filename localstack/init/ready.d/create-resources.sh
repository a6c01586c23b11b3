#!/usr/bin/env bash
# Creates the demo queues and topics used by the examples; safe to run any number of times.
# SQS transport (sqs_server / sqs_client):
#   mcp-requests          requests to the demo server (redrives to the DLQ after 5 receives)
#   mcp-requests-dlq      dead-letter queue for mcp-requests
#   mcp-responses         replies to the demo client
# SNS+SQS transport (sns_sqs_server / sns_sqs_client):
#   mcp-requests-topic    topic clients publish requests to
#   mcp-sns-requests      queue of the demo server, subscribed to mcp-requests-topic with raw
#                         delivery (redrives to mcp-sns-requests-dlq after 5 receives)
#   mcp-replies-topic     reply topic shared by clients (each subscribes with a filter policy)
# Runs inside the LocalStack container as a ready.d init hook (Docker mode) and on the
# host from localstack/start.sh (host mode). Needs only curl: it speaks the SQS and SNS
# query APIs. (LocalStack does not enforce queue policies; on AWS the library's
# `queue::sns::subscribe_queue` also lets the topic write to the queue.)
# Endpoint: $AWS_ENDPOINT_URL, default http://localhost:4566.
set -euo pipefail

ENDPOINT="${AWS_ENDPOINT_URL:-http://localhost:4566}"
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
# LocalStack does not check signatures; the header only tells it the service and region.
auth() {
    echo "AWS4-HMAC-SHA256 Credential=test/20240101/${REGION}/$1/aws4_request, SignedHeaders=host, Signature=0"
}

# call SERVICE VERSION ACTION [--data-urlencode k=v ...]: prints the XML response, fails on
# an error status.
call() {
    local service="$1" version="$2" action="$3" out status
    shift 3
    out="$(curl -sS --max-time 15 -w '\n%{http_code}' -X POST "${ENDPOINT}/" \
        -H "Authorization: $(auth "${service}")" \
        --data-urlencode "Action=${action}" --data-urlencode "Version=${version}" "$@")"
    status="${out##*$'\n'}"
    out="${out%$'\n'*}"
    if [[ "${status}" != 2* ]]; then
        echo "create-resources: ${service} ${action} failed (HTTP ${status}): ${out}" >&2
        return 1
    fi
    printf '%s\n' "${out}"
}

sqs() { call sqs 2012-11-05 "$@"; }
sns() { call sns 2010-03-31 "$@"; }

# xml_field NAME: the text of the first <NAME>...</NAME> on stdin.
xml_field() {
    sed -n "s:.*<$1>\([^<]*\)</$1>.*:\1:p" | head -n 1
}

create_queue() {
    sqs CreateQueue --data-urlencode "QueueName=$1" | xml_field QueueUrl
}

queue_arn() {
    local arn
    arn="$(sqs GetQueueAttributes --data-urlencode "QueueUrl=$1" \
        --data-urlencode "AttributeName.1=QueueArn" | sed 's:</Attribute>:\n:g' |
        sed -n 's:.*<Name>QueueArn</Name>[[:space:]]*<Value>\([^<]*\)</Value>.*:\1:p' | head -n 1)"
    if [[ -z "${arn}" ]]; then
        echo "create-resources: could not read the ARN of $1" >&2
        return 1
    fi
    echo "${arn}"
}

# create_queue_with_dlq NAME: creates NAME-dlq and NAME redriving to it after 5 receives;
# prints NAME's URL.
create_queue_with_dlq() {
    local dlq_url dlq_arn url
    dlq_url="$(create_queue "$1-dlq")"
    dlq_arn="$(queue_arn "${dlq_url}")"
    url="$(create_queue "$1")"
    sqs SetQueueAttributes --data-urlencode "QueueUrl=${url}" \
        --data-urlencode "Attribute.1.Name=RedrivePolicy" \
        --data-urlencode "Attribute.1.Value={\"deadLetterTargetArn\":\"${dlq_arn}\",\"maxReceiveCount\":\"5\"}" \
        >/dev/null
    echo "${url}"
}

create_topic() {
    sns CreateTopic --data-urlencode "Name=$1" | xml_field TopicArn
}

# subscribe_raw TOPIC_ARN QUEUE_URL: subscribes the queue with raw message delivery.
subscribe_raw() {
    sns Subscribe --data-urlencode "TopicArn=$1" --data-urlencode "Protocol=sqs" \
        --data-urlencode "Endpoint=$(queue_arn "$2")" \
        --data-urlencode "Attributes.entry.1.key=RawMessageDelivery" \
        --data-urlencode "Attributes.entry.1.value=true" \
        --data-urlencode "ReturnSubscriptionArn=true" >/dev/null
}

requests_url="$(create_queue_with_dlq mcp-requests)"
responses_url="$(create_queue mcp-responses)"
echo "create-resources: ${requests_url} (DLQ mcp-requests-dlq, maxReceiveCount 5)"
echo "create-resources: ${responses_url}"

request_topic="$(create_topic mcp-requests-topic)"
sns_requests_url="$(create_queue_with_dlq mcp-sns-requests)"
subscribe_raw "${request_topic}" "${sns_requests_url}"
reply_topic="$(create_topic mcp-replies-topic)"
echo "create-resources: ${request_topic} -> ${sns_requests_url} (raw delivery; DLQ mcp-sns-requests-dlq)"
echo "create-resources: ${reply_topic}"
