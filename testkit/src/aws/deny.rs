//! [`DenyOperation`]: an SDK interceptor that answers one operation with the
//! refusal IAM gives a role without the permission, so that least-privilege
//! behaviour can be tested on LocalStack (which does not enforce IAM).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_sqs::config::interceptors::BeforeDeserializationInterceptorContextMut;
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sqs::error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::http::StatusCode;

/// How the service words its refusal.
#[derive(Debug, Clone, Copy)]
pub enum Protocol {
    /// SQS (AWS JSON 1.0, query compatible): `AccessDenied`.
    SqsJson,
    /// SNS (AWS query, XML): `AuthorizationError`.
    SnsQuery,
}

/// Replaces every response to `operation` (e.g. `GetQueueAttributes`) with a
/// 403 refusal, and counts how many it replaced. The call still reaches the
/// endpoint; only its answer is changed.
#[derive(Debug, Clone)]
pub struct DenyOperation {
    operation: &'static str,
    protocol: Protocol,
    denied: Arc<AtomicU64>,
}

impl DenyOperation {
    /// Refuses every call of `operation`, worded as `protocol`'s service does.
    pub fn new(operation: &'static str, protocol: Protocol) -> Self {
        Self {
            operation,
            protocol,
            denied: Arc::default(),
        }
    }

    /// Responses replaced so far.
    pub fn denied(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }
}

impl Intercept for DenyOperation {
    fn name(&self) -> &'static str {
        "DenyOperation"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg.load::<Metadata>().map(Metadata::name) != Some(self.operation) {
            return Ok(());
        }
        self.denied.fetch_add(1, Ordering::Relaxed);
        let action = self.operation.to_ascii_lowercase();
        let response = context.response_mut();
        *response.status_mut() = StatusCode::try_from(403)?;
        let headers = response.headers_mut();
        headers.remove("x-amzn-query-error");
        headers.remove("content-length");
        let body = match self.protocol {
            Protocol::SqsJson => {
                headers.insert("content-type", "application/x-amz-json-1.0");
                headers.insert("x-amzn-query-error", "AccessDenied;Sender");
                format!(
                    r#"{{"__type":"com.amazon.coral.service#AccessDeniedException","message":"User: arn:aws:sts::000000000000:assumed-role/server is not authorized to perform: sqs:{action}"}}"#
                )
            }
            Protocol::SnsQuery => {
                headers.insert("content-type", "text/xml");
                format!(
                    r#"<ErrorResponse xmlns="https://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type><Code>AuthorizationError</Code><Message>User: arn:aws:sts::000000000000:assumed-role/server is not authorized to perform: SNS:{action}</Message></Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"#
                )
            }
        };
        *response.body_mut() = body.into();
        Ok(())
    }
}
