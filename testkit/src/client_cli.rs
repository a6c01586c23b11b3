//! What the client examples share: the call to make and making it.

use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, RoleClient};
use rmcp::transport::Transport;
use rmcp::{ClientHandler, ServiceExt};

/// Which tool to call, and how to connect.
#[derive(clap::Args)]
pub struct CallArgs {
    /// The tool to call.
    #[arg(long, default_value = "echo")]
    pub tool: String,
    /// The tool's arguments, as a JSON object.
    #[arg(long, default_value = r#"{"text": "hello over a queue"}"#)]
    pub args: String,
    /// `initialize` (any version up to 2025-11-25) or `2026-07-28`.
    #[arg(long, default_value = "initialize")]
    pub protocol: String,
}

impl CallArgs {
    /// The arguments, checked to be a JSON object.
    pub fn arguments(&self) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
        serde_json::from_str(&self.args)
            .map_err(|e| anyhow::anyhow!("--args must be a JSON object: {e}"))
    }
}

#[derive(Clone, Default)]
struct Client;
impl ClientHandler for Client {}

/// Connects over `transport` with the chosen lifecycle, makes the call,
/// prints its result as JSON on stdout and closes the client.
pub async fn call_and_print<T>(transport: T, call: &CallArgs) -> anyhow::Result<()>
where
    T: Transport<RoleClient> + Send + 'static,
{
    let arguments = call.arguments()?;
    let client = match call.protocol.as_str() {
        "initialize" => Client.serve(transport).await?,
        "2026-07-28" => {
            let lifecycle = ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            };
            rmcp::service::serve_client_with_lifecycle(Client, transport, lifecycle).await?
        }
        other => anyhow::bail!("unknown --protocol {other:?}"),
    };
    let result = client
        .call_tool(CallToolRequestParams::new(call.tool.clone()).with_arguments(arguments))
        .await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    client.cancel().await?;
    Ok(())
}
