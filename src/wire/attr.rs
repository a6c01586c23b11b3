//! Message attribute names and fixed values.
//!
//! The first six are the ones Python `asyncmcp` sends and reads; the rest are
//! this crate's additions, which Python peers ignore.

/// Always [`JSONRPC`]: marks the body as one JSON-RPC message.
pub const MESSAGE_TYPE: &str = "MessageType";
/// Epoch seconds when the message was sent (SQS `Number`).
pub const TIMESTAMP: &str = "Timestamp";
/// On requests: the JSON-RPC id as text (`str(id)` in Python). Servers of
/// this crate also put it on the notifications and the response they send
/// for a request (see [`SEQUENCE`]).
pub const REQUEST_ID: &str = "RequestId";
/// On requests and notifications: the JSON-RPC method.
pub const METHOD: &str = "Method";
/// The session the message belongs to (legacy, initialize-based versions).
pub const SESSION_ID: &str = "SessionId";
/// Client to server: the sending client's id. Servers of this crate echo it
/// on replies so that clients sharing one reply queue can tell theirs apart.
pub const CLIENT_ID: &str = "ClientId";
/// Client to server (this crate): the address replies go to.
pub const REPLY_TO: &str = "ReplyTo";
/// Optional, either direction (asyncmcp extension): an HMAC over the body
/// and every other attribute, under a key the peers share; see
/// [`signing`](super::signing).
pub const SIGNATURE: &str = "Signature";

/// The value of [`MESSAGE_TYPE`].
pub const JSONRPC: &str = "jsonrpc";

/// `initialize` parameter naming the reply queue (Python asyncmcp 0.2.1).
pub const INIT_RESPONSE_QUEUE_URL: &str = "response_queue_url";
/// `initialize` `_meta` key naming the reply queue (Python asyncmcp main branch).
pub const INIT_META_RESPONSE_QUEUE_URL: &str = "responseQueueUrl";
/// Server to client (this crate): the position of a message among those sent
/// for one request (SQS `Number`, from 1). Notifications take 1, 2, … in the
/// order the handler emitted them; the final response takes the next number,
/// so a client knows how many notifications must arrive before it. Carried
/// with [`REQUEST_ID`] naming the request.
pub const SEQUENCE: &str = "Sequence";

/// On a message for a webhook (this crate): the MCP Streamable HTTP session
/// it belongs to, sent by the webhook outbox as the `Mcp-Session-Id` header
/// (what Python asyncmcp's StreamableHTTP+webhook server sends).
pub const MCP_SESSION_ID: &str = "McpSessionId";
/// On a message for a webhook (this crate): its delivery id, the
/// `webhook-id` of a signed delivery, when the sender chose one (otherwise
/// the webhook outbox derives it from the message). Not sent as a header.
pub const DELIVERY_ID: &str = "DeliveryId";

/// On a request a server dead-lettered (this crate): why it gave up.
pub const DEAD_LETTER_REASON: &str = "DeadLetterReason";
/// On a request a server dead-lettered (this crate): how many times it was
/// delivered (SQS `Number`).
pub const RECEIVE_COUNT: &str = "ReceiveCount";

/// `initialize` parameter naming the client's reply topic (Python asyncmcp
/// 0.2.1, SNS+SQS transport).
pub const INIT_CLIENT_TOPIC_ARN: &str = "client_topic_arn";
/// `initialize` `_meta` key naming the client's reply topic (Python asyncmcp
/// main branch, SNS+SQS transport).
pub const INIT_META_CLIENT_TOPIC_ARN: &str = "clientTopicArn";

/// `_meta` key naming the webhook URL replies are POSTed to (Python asyncmcp
/// 0.2.1, webhook transport: required on `initialize`).
pub const META_WEBHOOK_URL: &str = "webhookUrl";
