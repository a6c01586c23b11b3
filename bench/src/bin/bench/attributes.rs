//! The attribute sets of `--scenario attributes`: what each costs the
//! broker, measured on the raw SQS round trip (`raw.rs`).
//!
//! Our SQS stack reached about 0.68 of the raw round trip at 50 in flight,
//! and the broker's work per message attribute was the suspect. The
//! scenario runs the raw round trip once per set below, each set adding
//! attributes to the one before, so the cost of an attribute is the
//! difference between two rows of one run.
//!
//! The values are not made up: they are the attributes the library's codec
//! ([`wire::encode`]) puts on a `tools/call echo` request and on its
//! response, with the headers our client and server pass it (see
//! `src/client/mod.rs` and `reply_headers` in `src/server/dispatch`): a
//! client id of the form our client makes, and a session id sealed by the
//! library's own keys, which our client presents after rmcp 3.9's
//! `initialize` and our server echoes. The last set adds a `Signature`
//! (sent when the peers sign) made by the library's signing keys. So each
//! value has the size the real one has. Only `Timestamp` is the same on
//! every message of a run, which costs the broker nothing more or less.
//!
//! Every set's receive asks for all message attributes, as our inbox does,
//! so the only thing that changes between rows is what the messages carry.

use asyncmcp::queue::{Attributes, QueueMessage};
use asyncmcp::wire::session::{SessionKeys, SessionState};
use asyncmcp::wire::signing::SigningKeys;
use asyncmcp::wire::{self, Headers, attr};
use serde::{Deserialize, Serialize};

/// The sets, each one adding attributes to the one before.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttributeSet {
    /// No attributes: the raw round trip.
    None,
    /// `MessageType` and `Timestamp`, both ways.
    TypeTime,
    /// Plus `Method` and `RequestId` on requests, `RequestId` on replies.
    Ids,
    /// Plus `ClientId` and `ReplyTo` on requests, `ClientId` on replies.
    Routing,
    /// Plus a sealed `SessionId` both ways.
    Session,
    /// Plus `Sequence` on replies: everything our SQS stack sends in the
    /// bench (rmcp 3.9's client, unsigned).
    Sequence,
    /// Plus `Signature` both ways: the most a message of ours carries.
    Signed,
    /// Not cumulative: what our client and server send each other now, in
    /// lean detail ([`wire::Detail::Lean`]), on a legacy call (`ClientId`,
    /// `ReplyTo` and `SessionId` on requests; `ClientId` and `RequestId` on
    /// the response).
    Lean,
}

impl AttributeSet {
    /// Every set, in the order they are measured.
    pub const ALL: [Self; 8] = [
        Self::None,
        Self::TypeTime,
        Self::Ids,
        Self::Routing,
        Self::Session,
        Self::Sequence,
        Self::Signed,
        Self::Lean,
    ];

    /// The row label in the report.
    pub fn label(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::TypeTime => "+ MessageType, Timestamp",
            Self::Ids => "+ Method, RequestId",
            Self::Routing => "+ ClientId, ReplyTo",
            Self::Session => "+ SessionId",
            Self::Sequence => "+ Sequence (full detail: all asyncmcp sent before)",
            Self::Signed => "+ Signature (signing on)",
            Self::Lean => "lean detail (what asyncmcp sends its own peers)",
        }
    }

    /// The attribute names on requests and on replies.
    fn names(self) -> (Vec<&'static str>, Vec<&'static str>) {
        let (mut request, mut reply) = match self {
            Self::None | Self::Lean => return (Vec::new(), Vec::new()),
            Self::TypeTime => {
                let both = vec![attr::MESSAGE_TYPE, attr::TIMESTAMP];
                return (both.clone(), both);
            }
            Self::Ids => Self::TypeTime.names(),
            Self::Routing => Self::Ids.names(),
            Self::Session => Self::Routing.names(),
            Self::Sequence => Self::Session.names(),
            Self::Signed => Self::Sequence.names(),
        };
        match self {
            Self::Ids => {
                request.extend([attr::METHOD, attr::REQUEST_ID]);
                reply.push(attr::REQUEST_ID);
            }
            Self::Routing => {
                request.extend([attr::CLIENT_ID, attr::REPLY_TO]);
                reply.push(attr::CLIENT_ID);
            }
            Self::Sequence => reply.push(attr::SEQUENCE),
            Self::Session => {
                request.push(attr::SESSION_ID);
                reply.push(attr::SESSION_ID);
            }
            Self::Signed => {
                request.push(attr::SIGNATURE);
                reply.push(attr::SIGNATURE);
            }
            Self::None | Self::TypeTime | Self::Lean => {}
        }
        (request, reply)
    }

    /// The attributes a request and a reply of this set carry, for a
    /// client whose replies go to `reply_address`.
    pub fn attributes(self, reply_address: &str) -> anyhow::Result<(Attributes, Attributes)> {
        if self == Self::Lean {
            let (request, reply) = ours(reply_address, wire::Detail::Lean)?;
            return Ok((request.attributes, reply.attributes));
        }
        let (request, reply) = full(reply_address)?;
        let (request_names, reply_names) = self.names();
        let pick = |all: &Attributes, names: &[&str]| -> anyhow::Result<Attributes> {
            names
                .iter()
                .map(|&name| {
                    let value = all.get(name).cloned().ok_or_else(|| {
                        anyhow::anyhow!("the codec no longer sends {name}: update attributes.rs")
                    })?;
                    Ok((name.to_owned(), value))
                })
                .collect()
        };
        Ok((
            pick(&request.attributes, &request_names)?,
            pick(&reply.attributes, &reply_names)?,
        ))
    }
}

/// The id of the sample request: a call some way into a run.
const SAMPLE_ID: u64 = 1042;

/// A `tools/call echo` request and its response as our client and server
/// encode them in the bench (unsigned), in `detail`: in full detail the
/// [`AttributeSet::Sequence`] set, in lean detail [`AttributeSet::Lean`].
fn ours(reply_address: &str, detail: wire::Detail) -> anyhow::Result<(QueueMessage, QueueMessage)> {
    // Our client's id: the configured one (a UUID by default) and a nonce.
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let client_id = format!("{}.{}", uuid::Uuid::new_v4(), &nonce[..16]);
    // The session our server seals in its `initialize` response.
    let session_id = SessionKeys::random().seal(&SessionState {
        reply_to: reply_address.to_owned(),
        protocol_version: "2025-11-25".into(),
        client_id: Some(client_id.clone()),
    });
    let request = serde_json::json!({
        "jsonrpc": "2.0",
        "id": SAMPLE_ID,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "ping"}},
    });
    let request = wire::encode(
        &request,
        &Headers {
            detail,
            client_id: Some(client_id.clone()),
            reply_to: Some(reply_address.to_owned()),
            session_id: Some(session_id.clone()),
            ..Headers::default()
        },
    )?;
    let response = serde_json::json!({
        "jsonrpc": "2.0",
        "id": SAMPLE_ID,
        "result": {"content": [{"type": "text", "text": "ping"}], "isError": false},
    });
    let response = wire::encode(
        &response,
        &Headers {
            detail,
            client_id: Some(client_id),
            // A lean reply carries no session id (the server leaves it out
            // when the request had a client id; `Reply::new`).
            session_id: (detail == wire::Detail::Full).then_some(session_id),
            request_id: Some(SAMPLE_ID.to_string()),
            sequence: Some(1),
            ..Headers::default()
        },
    )?;
    Ok((request, response))
}

/// [`ours`] signed: the [`AttributeSet::Signed`] set, from which the
/// others are picked.
fn full(reply_address: &str) -> anyhow::Result<(QueueMessage, QueueMessage)> {
    let (mut request, mut reply) = ours(reply_address, wire::Detail::Full)?;
    let key: Vec<u8> = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
        .iter()
        .flat_map(|id| *id.as_bytes())
        .collect();
    let signing = SigningKeys::new(key, None)?;
    for message in [&mut request, &mut reply] {
        signing.sign(message);
    }
    Ok((request, reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &str = "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/bench-r";

    #[test]
    fn the_sequence_set_is_what_our_codec_sends() {
        let (request, reply) = ours(REPLY, wire::Detail::Full).unwrap();
        let (set_request, set_reply) = AttributeSet::Sequence.attributes(REPLY).unwrap();
        let names = |a: &Attributes| a.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&set_request), names(&request.attributes));
        assert_eq!(names(&set_reply), names(&reply.attributes));
    }

    #[test]
    fn each_set_adds_to_the_one_before() {
        assert_eq!(
            AttributeSet::None.attributes(REPLY).unwrap(),
            Default::default()
        );
        let mut before = (0, 0);
        let cumulative = AttributeSet::ALL[1..]
            .iter()
            .filter(|set| **set != AttributeSet::Lean);
        for set in cumulative {
            let (request, reply) = set.attributes(REPLY).unwrap();
            let now = (request.len(), reply.len());
            assert!(now.0 + now.1 > before.0 + before.1, "{set:?}");
            assert!(now.0 >= before.0 && now.1 >= before.1, "{set:?}");
            before = now;
        }
        // SNS drops an 11th attribute on its way to a raw-delivery queue.
        assert!(before.0 <= 10 && before.1 <= 10, "{before:?}");
    }

    #[test]
    fn the_lean_set_is_what_our_codec_sends_an_asyncmcp_peer() {
        let (request, reply) = AttributeSet::Lean.attributes(REPLY).unwrap();
        let names = |a: &Attributes| {
            let mut names: Vec<String> = a.keys().cloned().collect();
            names.sort();
            names
        };
        assert_eq!(
            names(&request),
            [attr::CLIENT_ID, attr::REPLY_TO, attr::SESSION_ID]
        );
        assert_eq!(names(&reply), [attr::CLIENT_ID, attr::REQUEST_ID]);
    }

    #[test]
    fn a_signature_is_realistic_in_size() {
        let (request, _) = AttributeSet::Signed.attributes(REPLY).unwrap();
        let signature = request[attr::SIGNATURE].as_str();
        assert!((40..=120).contains(&signature.len()), "{signature}");
    }
}
