#!/usr/bin/env bash
# Creates the demo SQS queues used by the examples; safe to run any number of times.
#   mcp-requests      requests to the demo server (redrives to the DLQ after 5 receives)
#   mcp-requests-dlq  dead-letter queue for mcp-requests
#   mcp-responses     replies to the demo client
# Runs inside the LocalStack container as a ready.d init hook (Docker mode) and on the
# host from localstack/start.sh (host mode). Needs only curl: it speaks the SQS query API.
# Endpoint: $AWS_ENDPOINT_URL, default http://localhost:4566.
set -euo pipefail

ENDPOINT="${AWS_ENDPOINT_URL:-http://localhost:4566}"
REGION="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
# LocalStack does not check signatures; the header only tells it the service and region.
AUTH="AWS4-HMAC-SHA256 Credential=test/20240101/${REGION}/sqs/aws4_request, SignedHeaders=host, Signature=0"

# sqs ACTION [--data-urlencode k=v ...]: prints the XML response, fails on an error status.
sqs() {
    local action="$1" out status
    shift
    out="$(curl -sS --max-time 15 -w '\n%{http_code}' -X POST "${ENDPOINT}/" \
        -H "Authorization: ${AUTH}" \
        --data-urlencode "Action=${action}" --data-urlencode "Version=2012-11-05" "$@")"
    status="${out##*$'\n'}"
    out="${out%$'\n'*}"
    if [[ "${status}" != 2* ]]; then
        echo "create-resources: SQS ${action} failed (HTTP ${status}): ${out}" >&2
        return 1
    fi
    printf '%s\n' "${out}"
}

# xml_field NAME: the text of the first <NAME>...</NAME> on stdin.
xml_field() {
    sed -n "s:.*<$1>\([^<]*\)</$1>.*:\1:p" | head -n 1
}

create_queue() {
    sqs CreateQueue --data-urlencode "QueueName=$1" | xml_field QueueUrl
}

dlq_url="$(create_queue mcp-requests-dlq)"
dlq_arn="$(sqs GetQueueAttributes --data-urlencode "QueueUrl=${dlq_url}" \
    --data-urlencode "AttributeName.1=QueueArn" | sed 's:</Attribute>:\n:g' |
    sed -n 's:.*<Name>QueueArn</Name>[[:space:]]*<Value>\([^<]*\)</Value>.*:\1:p' | head -n 1)"
if [[ -z "${dlq_arn}" ]]; then
    echo "create-resources: could not read the ARN of ${dlq_url}" >&2
    exit 1
fi

requests_url="$(create_queue mcp-requests)"
sqs SetQueueAttributes --data-urlencode "QueueUrl=${requests_url}" \
    --data-urlencode "Attribute.1.Name=RedrivePolicy" \
    --data-urlencode "Attribute.1.Value={\"deadLetterTargetArn\":\"${dlq_arn}\",\"maxReceiveCount\":\"5\"}" \
    >/dev/null

responses_url="$(create_queue mcp-responses)"

echo "create-resources: ${requests_url} (DLQ ${dlq_url}, maxReceiveCount 5)"
echo "create-resources: ${responses_url}"
