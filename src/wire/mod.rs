//! One MCP JSON-RPC message ⇄ one queue message.
//!
//! This layer does no I/O. It turns a JSON-RPC message and its routing
//! [`Headers`] into a [`QueueMessage`] (body plus SQS message attributes), and
//! back; it seals and opens [session ids](session); and it builds the
//! JSON-RPC error replies that a transport sends for input it cannot serve.
//!
//! The format is a public contract, compatible with Python `asyncmcp` 0.2.1 and
//! documented in `docs/wire.md`:
//!
//! * the body is the JSON-RPC message itself, UTF-8 JSON, one per queue
//!   message, with no wrapper;
//! * routing travels in message attributes named in [`attr`];
//! * a message that reached an SQS queue through an SNS subscription without
//!   raw delivery is [unwrapped](envelope) before it is decoded;
//! * a message may be [signed](signing), optionally: an HMAC over its body
//!   and attributes, under a key the peers share, in the
//!   [`Signature`](attr::SIGNATURE) attribute.
//!
//! [`QueueMessage`]: crate::queue::QueueMessage

pub mod attr;
mod codec;
pub mod envelope;
mod parse;
pub mod session;
pub mod signing;

pub use codec::{
    Decoded, Detail, Headers, Inbound, WireError, decode, encode, error_reply,
    request_id_from_text, request_id_text,
};
pub(crate) use codec::{
    add_initialize_reply_to, decode_with, encode_message, encode_value, now_text,
};
pub(crate) use parse::{decode_client_message, names_initialize};
