//! AWS clients for the subcommands, from the usual settings chain
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_PROFILE`, roles, ...) through
//! [`sdk_config_from_env`], which also sets the library's connect and
//! attempt timeouts so that no call hangs on a dead connection.

use asyncmcp::queue::sqs::sdk_config_from_env;
use asyncmcp::queue::{sns, sqs};

/// One SQS and one SNS client sharing one configuration.
#[derive(Debug, Clone)]
pub(crate) struct Clients {
    /// For queues.
    pub(crate) sqs: sqs::Client,
    /// For topics.
    pub(crate) sns: sns::Client,
}

/// The clients for the environment's AWS settings. Loading makes no call:
/// missing credentials show at the first request.
pub(crate) async fn clients() -> Clients {
    let sdk = sdk_config_from_env().await;
    Clients {
        sqs: sqs::client(&sdk),
        sns: sns::client(&sdk),
    }
}
