//! Message attribute names and fixed values.
//!
//! The first six are the ones Python `asyncmcp` sends and reads; the rest are
//! this crate's additions, which Python peers ignore.

/// Always [`JSONRPC`]: marks the body as one JSON-RPC message.
pub const MESSAGE_TYPE: &str = "MessageType";
/// Epoch seconds when the message was sent (SQS `Number`).
pub const TIMESTAMP: &str = "Timestamp";
/// On requests: the JSON-RPC id as text (`str(id)` in Python).
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

/// The value of [`MESSAGE_TYPE`].
pub const JSONRPC: &str = "jsonrpc";

/// `initialize` parameter naming the reply queue (Python asyncmcp 0.2.1).
pub const INIT_RESPONSE_QUEUE_URL: &str = "response_queue_url";
/// `initialize` `_meta` key naming the reply queue (Python asyncmcp main branch).
pub const INIT_META_RESPONSE_QUEUE_URL: &str = "responseQueueUrl";
