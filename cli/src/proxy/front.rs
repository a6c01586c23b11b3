//! The [`Forwarder`] as an rmcp [`ServerHandler`], which rmcp's Streamable
//! HTTP server requires (the stdio server takes any service).
//!
//! rmcp's blanket service of a `ServerHandler` does the per-request protocol
//! checks of the HTTP transport (a request's own protocol version, the
//! metadata 2026-07-28 requires) and answers `initialize`, `server/discover`
//! and `ping` from [`get_info`](ServerHandler::get_info), the queue-backed
//! server's `initialize` result; every other request is rebuilt and handed
//! to the forwarder, and its answer read back as the result type the method
//! has.

// Subscriptions are legacy-only (2026-07-28 replaced them with
// `subscriptions/listen`), but the servers this proxies still have them.
#![allow(deprecated)]

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
    CancelTaskRequest, ClientRequest, CompleteRequest, CompleteRequestParams, CompleteResult,
    CustomRequest, CustomResult, ErrorData, GetPromptRequest, GetPromptRequestParams,
    GetPromptResponse, GetPromptResult, GetTaskParams, GetTaskRequest, GetTaskResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, RequestOptionalParam, ServerConfig, ServerResult, SetLevelRequest,
    SetLevelRequestParams, SubscribeRequest, SubscribeRequestParams, UnsubscribeRequest,
    UnsubscribeRequestParams, UpdateTaskParams, UpdateTaskRequest,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, Service};
use serde::de::DeserializeOwned;

use super::ServerConnection;
use crate::bridge::Forwarder;

/// A [`Forwarder`] over the server connection, as a `ServerHandler`.
#[derive(Debug, Clone)]
pub(super) struct Front {
    forwarder: Forwarder<ServerConnection>,
    info: ServerConfig,
}

impl Front {
    /// Forwards to `downstream`, introducing itself as the server did.
    pub(super) fn new(downstream: ServerConnection) -> Self {
        let info = downstream.connection.info.clone();
        Self {
            forwarder: Forwarder::new(downstream),
            info,
        }
    }

    /// Forwards `request`; the answer as it came.
    async fn forward(
        &self,
        request: impl Into<ClientRequest>,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        self.forwarder.handle_request(request.into(), context).await
    }

    /// Forwards `request`; the answer read as a `T`.
    async fn forward_as<T: DeserializeOwned>(
        &self,
        request: impl Into<ClientRequest>,
        context: RequestContext<RoleServer>,
    ) -> Result<T, ErrorData> {
        read_as(self.forward(request, context).await?)
    }
}

/// A list request with `params`.
fn list<M: Default>(
    params: Option<PaginatedRequestParams>,
) -> RequestOptionalParam<M, PaginatedRequestParams> {
    RequestOptionalParam {
        method: M::default(),
        params,
        extensions: Default::default(),
    }
}

/// `result` as a `T`. rmcp reads an answer into the first variant of the
/// untagged [`ServerResult`] its JSON fits, which need not be the one the
/// method has (an empty object fits many): read again through JSON.
fn read_as<T: DeserializeOwned>(result: ServerResult) -> Result<T, ErrorData> {
    serde_json::to_value(&result)
        .and_then(serde_json::from_value)
        .map_err(|error| {
            ErrorData::internal_error(format!("the server's answer is not valid: {error}"), None)
        })
}

impl ServerHandler for Front {
    fn get_info(&self) -> ServerConfig {
        self.info.clone()
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        self.forward_as(CompleteRequest::new(request), context)
            .await
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.forward(SetLevelRequest::new(request), context)
            .await
            .map(drop)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        match self
            .forward(GetPromptRequest::new(request), context)
            .await?
        {
            ServerResult::InputRequiredResult(result) => Ok(result.into()),
            result => read_as::<GetPromptResult>(result).map(Into::into),
        }
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.forward_as(ClientRequest::ListPromptsRequest(list(request)), context)
            .await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.forward_as(ClientRequest::ListResourcesRequest(list(request)), context)
            .await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.forward_as(
            ClientRequest::ListResourceTemplatesRequest(list(request)),
            context,
        )
        .await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        match self
            .forward(ReadResourceRequest::new(request), context)
            .await?
        {
            ServerResult::InputRequiredResult(result) => Ok(result.into()),
            result => read_as::<ReadResourceResult>(result).map(Into::into),
        }
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.forward(SubscribeRequest::new(request), context)
            .await
            .map(drop)
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.forward(UnsubscribeRequest::new(request), context)
            .await
            .map(drop)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        match self.forward(CallToolRequest::new(request), context).await? {
            ServerResult::InputRequiredResult(result) => Ok(result.into()),
            ServerResult::CreateTaskResult(result) => Ok(result.into()),
            result => read_as::<CallToolResult>(result).map(Into::into),
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.forward_as(ClientRequest::ListToolsRequest(list(request)), context)
            .await
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        match self.forward(request, context).await? {
            ServerResult::CustomResult(result) => Ok(result),
            result => read_as(result),
        }
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        self.forward_as(GetTaskRequest::new(request), context).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.forward(UpdateTaskRequest::new(request), context)
            .await
            .map(drop)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.forward(CancelTaskRequest::new(request), context)
            .await
            .map(drop)
    }
}
