//! The client side of the downstream connection.

// Sampling, roots and logging are deprecated in the newest protocol version
// (SEP-2577), but the servers this bridges still use them on older ones.
#![allow(deprecated)]

use std::sync::{Arc, OnceLock};

use rmcp::model::{
    ClientConfig, CreateMessageRequestParams, CreateMessageResult, CustomRequest, CustomResult,
    ElicitRequestParams, ElicitResult, ErrorCode, ErrorData, Implementation, ListRootsResult,
    LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ClientHandler, Peer, RoleClient, RoleServer};

use super::cache::{ListCache, ListKind};
use super::progress::{Observed, Observer, ProgressRoutes};

/// Where the downstream server's log messages go.
#[derive(Debug, Clone)]
pub(crate) enum LogSink {
    /// To this process's log on stderr: with many callers, a log message
    /// that names no request belongs to none of them.
    Stderr,
    /// To the one caller, once it is connected (the stdio proxy).
    Caller(Arc<OnceLock<Peer<RoleServer>>>),
}

/// What the [`Forwarder`](super::Forwarder) and the [`DownstreamClient`]
/// of one downstream connection share.
#[derive(Debug)]
pub(crate) struct Connection {
    /// The downstream server.
    pub(crate) peer: Peer<RoleClient>,
    /// Its `initialize` result.
    pub(crate) info: ServerConfig,
    /// Its progress routes, filled by the client handler's routes.
    pub(crate) routes: Arc<ProgressRoutes>,
    /// Its kept list pages.
    pub(crate) lists: Arc<ListCache>,
}

/// The rmcp client handler of a downstream connection: see the module docs
/// of [`bridge`](super).
#[derive(Debug, Clone)]
pub(crate) struct DownstreamClient {
    name: &'static str,
    routes: Arc<ProgressRoutes>,
    lists: Arc<ListCache>,
    logs: LogSink,
}

impl DownstreamClient {
    /// A handler introducing itself as `name` (e.g. `asyncmcp-serve`).
    pub(crate) fn new(name: &'static str, logs: LogSink) -> Self {
        Self {
            name,
            routes: Arc::default(),
            lists: Arc::default(),
            logs,
        }
    }

    /// `transport` to the downstream server, counting its progress
    /// notifications as they arrive (see [`progress`](super::progress)):
    /// what this handler must be served over.
    pub(crate) fn observe<T>(&self, transport: T) -> Observed<T> {
        Observed::new(transport, self.observer())
    }

    /// What counts a received message, for a transport wrapped elsewhere
    /// (see [`observe`](Self::observe)).
    pub(crate) fn observer(&self) -> Observer {
        self.routes.observer()
    }

    /// The connection, once rmcp has connected `peer` with this handler.
    pub(crate) fn connection(&self, peer: Peer<RoleClient>) -> Option<Connection> {
        let known = peer.peer_info()?;
        let mut info = ServerConfig::new(known.capabilities.clone());
        info.protocol_version = known.protocol_version.clone();
        info.instructions = known.instructions.clone();
        if let Some(implementation) = &known.server_info {
            info.server_info = implementation.clone();
        }
        Some(Connection {
            peer,
            info,
            routes: self.routes.clone(),
            lists: self.lists.clone(),
        })
    }

    fn refuse(&self, method: &str) -> ErrorData {
        tracing::warn!(
            %method,
            "the server asked its client for {method}; refused: it cannot be carried to the caller"
        );
        ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            format!(
                "{method} is not available: this server runs behind {}, which cannot carry requests to the caller",
                self.name
            ),
            None,
        )
    }
}

impl ClientHandler for DownstreamClient {
    async fn create_message(
        &self,
        _params: CreateMessageRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        Err(self.refuse("sampling/createMessage"))
    }

    async fn list_roots(
        &self,
        _context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        Err(self.refuse("roots/list"))
    }

    async fn create_elicitation(
        &self,
        _request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        Err(self.refuse("elicitation/create"))
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleClient>,
    ) -> Result<CustomResult, ErrorData> {
        Err(self.refuse(&request.method))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let token = params.progress_token.clone();
        match self.routes.route(params).await {
            Some((caller, progress)) => {
                if let Err(error) = caller.notify_progress(progress).await {
                    tracing::debug!(%error, "progress not passed on: the caller is gone");
                }
            }
            None => tracing::debug!(?token, "progress for no running request dropped"),
        }
        self.routes.handled(&token);
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        if let LogSink::Caller(caller) = &self.logs
            && let Some(caller) = caller.get()
        {
            if let Err(error) = caller.notify_logging_message(params).await {
                tracing::debug!(%error, "log message not passed on: the caller is gone");
            }
            return;
        }
        log_to_stderr(&params);
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.lists.invalidate(ListKind::Tools);
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.lists.invalidate(ListKind::Prompts);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.lists.invalidate(ListKind::Resources);
        self.lists.invalidate(ListKind::ResourceTemplates);
    }

    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.client_info = Implementation::new(self.name, env!("CARGO_PKG_VERSION"));
        info
    }
}

/// Writes a downstream log message to this process's log.
fn log_to_stderr(params: &LoggingMessageNotificationParam) {
    let logger = params.logger.as_deref().unwrap_or("server");
    let data = &params.data;
    match params.level {
        LoggingLevel::Debug => tracing::debug!(%logger, %data, "server log"),
        LoggingLevel::Info | LoggingLevel::Notice => {
            tracing::info!(%logger, %data, "server log");
        }
        LoggingLevel::Warning => tracing::warn!(%logger, %data, "server log"),
        _ => tracing::error!(%logger, %data, "server log"),
    }
}
