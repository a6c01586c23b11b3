//! The transport of one request's rmcp service.
//!
//! Like rmcp's `OneshotTransport` (the one its stateless Streamable HTTP
//! server uses): the request goes in, every message the service emits comes
//! out of a channel, and the transport closes once the final response (or
//! error) is out. Unlike it, a request the service sends to the client
//! (`roots/list`, `sampling/createMessage`, `elicitation/create`) is not let
//! out: a stateless queue server cannot route the client's answer back to
//! this run, so the request is answered at once, into the service, with a
//! JSON-RPC error the handler can handle, and the call goes on.

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::model::{
    ClientJsonRpcMessage, ErrorCode, ErrorData, JsonRpcError, JsonRpcRequest, ServerJsonRpcMessage,
    ServerRequest,
};
use rmcp::transport::Transport;
use tokio::sync::{Semaphore, mpsc};

/// The JSON-RPC error a server-to-client request is answered with: the
/// code a client gives for a method it does not offer, so a handler treats
/// it as it would a client without the capability.
pub(super) const NOT_CARRIED: ErrorCode = ErrorCode::METHOD_NOT_FOUND;

/// The transport of one request: see the module documentation.
pub(super) struct RequestTransport {
    /// The request, until the service has taken it.
    request: Option<ClientJsonRpcMessage>,
    /// Messages the service emits, to be relayed to the client.
    emitted: mpsc::Sender<ServerJsonRpcMessage>,
    /// Answers to the service's own requests, made here.
    answers_tx: mpsc::UnboundedSender<ClientJsonRpcMessage>,
    answers: mpsc::UnboundedReceiver<ClientJsonRpcMessage>,
    /// Given a permit once the final response is out: the input ends then.
    finished: Arc<Semaphore>,
}

impl RequestTransport {
    /// A transport that hands `request` to the service, and the channel of
    /// what the service emits.
    pub(super) fn new(
        request: ClientJsonRpcMessage,
    ) -> (Self, mpsc::Receiver<ServerJsonRpcMessage>) {
        // Bounded, as rmcp's: a handler emitting faster than the relay sends
        // waits for it.
        let (emitted, relay) = mpsc::channel(16);
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let transport = Self {
            request: Some(request),
            emitted,
            answers_tx,
            answers,
            finished: Arc::new(Semaphore::new(0)),
        };
        (transport, relay)
    }
}

/// The error answering `request`, a request of the service to the client.
fn refusal(request: &JsonRpcRequest<ServerRequest>) -> ClientJsonRpcMessage {
    // `ServerRequest` has no `method()`; its JSON form names it.
    let method = serde_json::to_value(&request.request)
        .ok()
        .and_then(|value| value.get("method")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown method".to_owned());
    tracing::warn!(
        %method,
        "a handler made a server-to-client request; refused: queues do not carry them"
    );
    let message = format!(
        "server-to-client requests ({method}) are not carried over queues: the client cannot be asked"
    );
    ClientJsonRpcMessage::Error(JsonRpcError::new(
        Some(request.id.clone()),
        ErrorData::new(NOT_CARRIED, message, None),
    ))
}

impl Transport<RoleServer> for RequestTransport {
    type Error = mpsc::error::SendError<ServerJsonRpcMessage>;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let answer = match &item {
            ServerJsonRpcMessage::Request(request) => Some(refusal(request)),
            _ => None,
        };
        let emitted = self.emitted.clone();
        let answers = self.answers_tx.clone();
        let finished = self.finished.clone();
        async move {
            if let Some(answer) = answer {
                // Only fails once the service has stopped reading, when no
                // one waits for the answer any more.
                let _ = answers.send(answer);
                return Ok(());
            }
            let is_final = matches!(
                item,
                ServerJsonRpcMessage::Response(_) | ServerJsonRpcMessage::Error(_)
            );
            emitted.send(item).await?;
            if is_final {
                finished.add_permits(1);
            }
            Ok(())
        }
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        if let Some(request) = self.request.take() {
            return Some(request);
        }
        tokio::select! {
            answer = self.answers.recv() => answer,
            _ = self.finished.acquire() => None,
        }
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.request.take();
        Ok(())
    }
}
