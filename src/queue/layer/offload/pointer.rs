//! The claim check's wire format: the pointer body and attribute of AWS's
//! SQS/SNS extended client libraries (Java `amazon-sqs-java-extended-client-lib`
//! and `payloadoffloading-common`, Python `amazon-sqs-extended-client`), so
//! that services using them read our messages and we read theirs.
//!
//! A message whose body was moved to S3 carries, as its body,
//!
//! ```text
//! ["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"b","s3Key":"k"}]
//! ```
//!
//! (written exactly so, as Java's Jackson writes it; Python's `json.dumps`
//! adds spaces, which reading allows) and a `Number` attribute
//! `ExtendedPayloadSize` with the body's length in bytes (older Java
//! versions: `SQSLargePayloadSize`). The attribute is informative only:
//! whoever sends can write any number there.
//!
//! A settled delivery's object is found again from its [`Receipt`]: the
//! layer appends the object's bucket and key to the broker's receipt (see
//! `tag_receipt`), so nothing is kept in memory between receive and ack.

use serde::{Deserialize, Serialize};

use crate::queue::Receipt;

/// The first element of a pointer body: the Java class that holds it.
pub const POINTER_CLASS: &str = "software.amazon.payloadoffloading.PayloadS3Pointer";

/// The attribute carrying the original body's length in bytes.
pub const PAYLOAD_SIZE_ATTRIBUTE: &str = "ExtendedPayloadSize";

/// The same attribute as older Java extended clients name it.
pub const LEGACY_PAYLOAD_SIZE_ATTRIBUTE: &str = "SQSLargePayloadSize";

/// Pointer bodies are small; a longer body is never taken for one, so a
/// large JSON array that happens to name the class is not parsed twice.
const MAX_POINTER_LEN: usize = 4096;

/// Where an offloaded body is: an S3 object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadPointer {
    /// The bucket.
    #[serde(rename = "s3BucketName")]
    pub bucket: String,
    /// The object key.
    #[serde(rename = "s3Key")]
    pub key: String,
}

/// A body that claims to be a pointer but is not a well-formed one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed payload pointer: {0}")]
pub struct MalformedPointer(String);

impl PayloadPointer {
    /// The pointer body, byte for byte as the Java library writes it.
    pub fn to_body(&self) -> String {
        // A tuple of a string and a struct whose fields serialise in
        // declaration order: `["<class>",{"s3BucketName":..,"s3Key":..}]`.
        serde_json::to_string(&(POINTER_CLASS, self)).unwrap_or_default()
    }

    /// The pointer in `body`: `None` when the body is not a pointer at all
    /// (any ordinary message), an error when it names the pointer class but
    /// is not a well-formed pointer.
    pub fn parse(body: &str) -> Option<Result<Self, MalformedPointer>> {
        let trimmed = body.trim_start();
        if !trimmed.starts_with('[')
            || body.len() > MAX_POINTER_LEN
            || !body.contains(POINTER_CLASS)
        {
            return None;
        }
        let parsed: (String, PayloadPointer) = match serde_json::from_str(body) {
            Ok(parsed) => parsed,
            Err(error) => {
                // A JSON array not led by the class (a JSON-RPC batch that
                // mentions it somewhere) is an ordinary body.
                let leads = serde_json::from_str::<Vec<serde_json::Value>>(body)
                    .ok()
                    .and_then(|items| items.first().cloned())
                    == Some(serde_json::Value::String(POINTER_CLASS.to_owned()));
                return leads.then(|| Err(MalformedPointer(error.to_string())));
            }
        };
        if parsed.0 != POINTER_CLASS {
            return None;
        }
        let pointer = parsed.1;
        if pointer.bucket.is_empty() || pointer.key.is_empty() {
            return Some(Err(MalformedPointer("empty bucket name or key".to_owned())));
        }
        Some(Ok(pointer))
    }

    /// `s3://bucket/key`, for messages.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// What separates the broker's receipt from the object in a tagged one.
/// Neither SQS receipt handles nor bucket names contain it.
const RECEIPT_SEPARATOR: char = '\n';

/// `receipt` with the object `pointer` appended, to delete on ack.
pub(crate) fn tag_receipt(receipt: &Receipt, pointer: &PayloadPointer) -> Receipt {
    Receipt(format!(
        "{}{RECEIPT_SEPARATOR}{}{RECEIPT_SEPARATOR}{}",
        receipt.0, pointer.bucket, pointer.key
    ))
}

/// The broker's receipt inside a possibly tagged `receipt`, and the object
/// it was tagged with.
pub(crate) fn untag_receipt(receipt: &Receipt) -> (Receipt, Option<PayloadPointer>) {
    let mut parts = receipt.0.splitn(3, RECEIPT_SEPARATOR);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(inner), Some(bucket), Some(key)) => (
            Receipt(inner.to_owned()),
            Some(PayloadPointer {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            }),
        ),
        _ => (receipt.clone(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pointer(bucket: &str, key: &str) -> PayloadPointer {
        PayloadPointer {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }
    }

    #[test]
    fn the_body_is_written_as_java_writes_it() {
        let body = pointer("my-bucket", "e2f1c0de-5a4b-4c3d-9e8f-0123456789ab").to_body();
        assert_eq!(
            body,
            r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"my-bucket","s3Key":"e2f1c0de-5a4b-4c3d-9e8f-0123456789ab"}]"#
        );
        assert_eq!(
            PayloadPointer::parse(&body),
            Some(Ok(pointer(
                "my-bucket",
                "e2f1c0de-5a4b-4c3d-9e8f-0123456789ab"
            )))
        );
    }

    #[test]
    fn python_spacing_and_escapes_are_read() {
        let body = r#"["software.amazon.payloadoffloading.PayloadS3Pointer", {"s3BucketName": "b", "s3Key": "dir/k\"1"}]"#;
        assert_eq!(
            PayloadPointer::parse(body),
            Some(Ok(pointer("b", "dir/k\"1")))
        );
        // The fields in the other order.
        let body = r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3Key":"k","s3BucketName":"b"}]"#;
        assert_eq!(PayloadPointer::parse(body), Some(Ok(pointer("b", "k"))));
    }

    #[test]
    fn ordinary_bodies_are_not_pointers() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"x","params":{"t":"software.amazon.payloadoffloading.PayloadS3Pointer"}}]"#,
            r#"["another.Class",{"s3BucketName":"b","s3Key":"k"}]"#,
            "",
            "[",
        ] {
            assert_eq!(PayloadPointer::parse(body), None, "{body}");
        }
        let long = format!(
            r#"["{POINTER_CLASS}",{{"s3BucketName":"b","s3Key":"{}"}}]"#,
            "k".repeat(MAX_POINTER_LEN)
        );
        assert_eq!(PayloadPointer::parse(&long), None);
    }

    #[test]
    fn a_broken_pointer_is_malformed() {
        for body in [
            r#"["software.amazon.payloadoffloading.PayloadS3Pointer"]"#,
            r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"b"}]"#,
            r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":"","s3Key":"k"}]"#,
            r#"["software.amazon.payloadoffloading.PayloadS3Pointer",{"s3BucketName":1,"s3Key":"k"}]"#,
        ] {
            assert!(
                matches!(PayloadPointer::parse(body), Some(Err(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn receipts_carry_the_object_and_give_it_back() {
        let inner = Receipt("AQEB+abc/def==".to_owned());
        let object = pointer("bucket", "pre/fix/key\nwith a newline");
        let tagged = tag_receipt(&inner, &object);
        assert_ne!(tagged, inner);
        assert_eq!(untag_receipt(&tagged), (inner.clone(), Some(object)));
        assert_eq!(untag_receipt(&inner), (inner, None));
    }
}
