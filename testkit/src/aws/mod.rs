//! LocalStack for the tests that need AWS: finding (or starting) it, clients
//! for it, and the faults a test can put between a process and it.
//!
//! * [`localstack`] finds LocalStack once per test binary: `AWS_ENDPOINT_URL` when set (as
//!   `scripts/test.sh` does), else a `localstack/localstack` container (tag
//!   [`LOCALSTACK_TAG`]) started through testcontainers when a Docker engine answers, else it
//!   panics with what to run.
//! * [`LocalStack::sdk_config`] / [`LocalStack::sqs_client`] / [`LocalStack::create_queue`]
//!   talk to it with test credentials in us-east-1; [`sdk_config_for`] does the same for any
//!   endpoint (a [`FaultProxy`](proxy::FaultProxy) in front of it).
//! * [`queue_depth`] counts a queue's messages; `TopicQueue` (feature `sns`) is an SNS topic
//!   with a queue subscribed to it.
//! * [`proxy::FaultProxy`] is a TCP proxy in front of LocalStack whose line can be cut, stalled
//!   and restored, to simulate a network outage; [`deny::DenyOperation`] answers one SDK
//!   operation with the refusal IAM gives a role without the permission.

pub mod deny;
pub mod proxy;
#[cfg(feature = "s3")]
pub mod s3;

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

/// Test region; LocalStack's account is `000000000000`.
pub const REGION: &str = "us-east-1";
/// LocalStack image used when the harness starts a container itself: `LOCALSTACK_IMAGE_TAG`
/// of localstack/versions.env, the one pin of the LocalStack versions, read when this compiles.
pub const LOCALSTACK_TAG: &str = {
    const PINS: &[u8] = include_bytes!("../../../localstack/versions.env");
    const KEY: &[u8] = b"LOCALSTACK_IMAGE_TAG=";
    // str::lines and slice equality are not const: walk the lines and compare by hand.
    let mut tag: Option<&[u8]> = None;
    let mut rest = PINS;
    while !rest.is_empty() {
        let mut end = 0;
        while end < rest.len() && rest[end] != b'\n' {
            end += 1;
        }
        let (line, after) = rest.split_at(end);
        rest = match after {
            [_newline, tail @ ..] => tail,
            [] => after,
        };
        if let Some((key, value)) = line.trim_ascii().split_at_checked(KEY.len()) {
            let mut i = 0;
            while i < KEY.len() && key[i] == KEY[i] {
                i += 1;
            }
            if i == KEY.len() {
                tag = Some(value);
            }
        }
    }
    match tag {
        Some(tag) if !tag.is_empty() => match std::str::from_utf8(tag) {
            Ok(tag) => tag,
            Err(_) => panic!("LOCALSTACK_IMAGE_TAG in localstack/versions.env is not UTF-8"),
        },
        _ => panic!("localstack/versions.env sets no LOCALSTACK_IMAGE_TAG"),
    }
};

const NOT_RUNNING: &str = "LocalStack is not running: run `scripts/test.sh` (starts it), or \
     `localstack/start.sh` then `export AWS_ENDPOINT_URL=http://localhost:4566`";

/// A LocalStack (SQS, SNS and S3) shared by every test of one test binary.
pub struct LocalStack {
    /// Base URL, e.g. `http://localhost:4566`.
    pub endpoint: String,
    /// Keeps a container started by the harness alive for the life of the binary.
    _container: Option<
        testcontainers_modules::testcontainers::ContainerAsync<
            testcontainers_modules::localstack::LocalStack,
        >,
    >,
}

static LOCALSTACK: OnceCell<LocalStack> = OnceCell::const_new();

/// The LocalStack for this test binary, found or started on first use.
pub async fn localstack() -> &'static LocalStack {
    LOCALSTACK.get_or_init(init_localstack).await
}

async fn init_localstack() -> LocalStack {
    if let Some(endpoint) = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        let endpoint = endpoint.trim().trim_end_matches('/').to_string();
        if let Err(err) = check_health(&endpoint).await {
            panic!(
                "AWS_ENDPOINT_URL={endpoint} is set, but no LocalStack with SQS answers there \
                 ({err}). {NOT_RUNNING}"
            );
        }
        return LocalStack {
            endpoint,
            _container: None,
        };
    }
    if docker_available().await {
        return start_container().await;
    }
    panic!("{NOT_RUNNING}");
}

async fn docker_available() -> bool {
    tokio::process::Command::new("docker")
        .arg("info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

async fn start_container() -> LocalStack {
    use testcontainers_modules::testcontainers::ImageExt;
    use testcontainers_modules::testcontainers::runners::AsyncRunner;

    let container = testcontainers_modules::localstack::LocalStack::default()
        .with_tag(LOCALSTACK_TAG)
        .with_env_var("SERVICES", "sqs,sns,s3")
        .with_env_var("SQS_ENDPOINT_STRATEGY", "path")
        .with_env_var("DISABLE_EVENTS", "1")
        .start()
        .await
        .unwrap_or_else(|e| {
            panic!("starting localstack/localstack:{LOCALSTACK_TAG} with Docker failed: {e}")
        });
    let host = container
        .get_host()
        .await
        .unwrap_or_else(|e| panic!("LocalStack container host: {e}"));
    let port = container
        .get_host_port_ipv4(4566)
        .await
        .unwrap_or_else(|e| panic!("LocalStack container port: {e}"));
    let endpoint = format!("http://{host}:{port}");
    remove_container_after_exit(container.id());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match check_health(&endpoint).await {
            Ok(()) => break,
            Err(err) if tokio::time::Instant::now() >= deadline => {
                panic!("the LocalStack container at {endpoint} never became healthy: {err}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    LocalStack {
        endpoint,
        _container: Some(container),
    }
}

/// Statics are never dropped, so testcontainers cannot remove the container itself: a
/// detached shell waits for this process to exit and then removes it.
fn remove_container_after_exit(id: &str) {
    let spawned = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done; docker rm -f -v "$2" >/dev/null 2>&1"#)
        .arg("sh")
        .arg(std::process::id().to_string())
        .arg(id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(e) = spawned {
        eprintln!("warning: cannot watch LocalStack container {id} for removal: {e}");
    }
}

/// `GET {endpoint}/_localstack/health` over a plain TCP connection; Ok when SQS is up.
async fn check_health(endpoint: &str) -> Result<(), String> {
    if service_up(endpoint, "sqs").await? {
        Ok(())
    } else {
        Err("SQS is not running in that LocalStack (start it with SERVICES=sqs,sns,s3)".into())
    }
}

/// Whether `/_localstack/health` at `endpoint` reports `service` running or available.
pub(crate) async fn service_up(endpoint: &str, service: &str) -> Result<bool, String> {
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// endpoints are supported, got {endpoint}"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let request = format!(
        "GET /_localstack/health HTTP/1.0\r\nHost: {authority}\r\nAccept: application/json\r\n\r\n"
    );
    let exchange = async {
        let mut stream = TcpStream::connect(&addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("no answer from {addr} within 5 s"))?
        .map_err(|e| format!("{addr}: {e}"))?;
    let status = response.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("/_localstack/health answered `{status}`"));
    }
    let compact: String = response.chars().filter(|c| !c.is_whitespace()).collect();
    Ok(compact.contains(&format!(r#""{service}":"running""#))
        || compact.contains(&format!(r#""{service}":"available""#)))
}

impl LocalStack {
    /// AWS SDK configuration for this LocalStack: credentials test/test, region us-east-1.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        sdk_config_for(&self.endpoint).await
    }

    /// An SQS client for this LocalStack.
    pub async fn sqs_client(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config().await)
    }

    /// Creates a queue named [`unique_name`](crate::unique_name)`(prefix)` and returns its URL.
    pub async fn create_queue(&self, prefix: &str) -> String {
        let name = crate::unique_name(prefix);
        let out = self
            .sqs_client()
            .await
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateQueue {name} on {}: {e:?}", self.endpoint));
        out.queue_url()
            .unwrap_or_else(|| panic!("CreateQueue {name} returned no QueueUrl"))
            .to_string()
    }

    /// Environment for child processes (the Python peers): endpoint, region, credentials.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_REGION", REGION.to_string()),
            ("AWS_DEFAULT_REGION", REGION.to_string()),
            ("AWS_ACCESS_KEY_ID", "test".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ]
    }
}

/// AWS SDK configuration for a LocalStack (or a proxy in front of one) at `endpoint`: test
/// credentials, us-east-1, a 5 s connect timeout and a 30 s attempt timeout.
pub async fn sdk_config_for(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
        .load()
        .await
}

/// Messages in the queue at `queue_url`, visible or in flight.
pub async fn queue_depth(client: &aws_sdk_sqs::Client, queue_url: &str) -> usize {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attributes = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes");
    let count = |name: QueueAttributeName| {
        attributes
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    count(QueueAttributeName::ApproximateNumberOfMessages)
        + count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
}

/// An SNS topic with a queue subscribed to it (raw delivery or in the envelope), both named
/// [`unique_name`](crate::unique_name)`(prefix)`.
#[cfg(feature = "sns")]
pub struct TopicQueue {
    /// The topic's ARN.
    pub topic: String,
    /// The subscribed queue's URL.
    pub queue: String,
    /// The subscription's ARN.
    pub subscription: String,
}

#[cfg(feature = "sns")]
impl TopicQueue {
    /// Creates the queue and the topic and subscribes the one to the other.
    pub async fn create(
        sqs_client: &aws_sdk_sqs::Client,
        sns_client: &aws_sdk_sns::Client,
        prefix: &str,
        raw: bool,
    ) -> Self {
        use asyncmcp::queue::{sns, sqs};
        let name = crate::unique_name(prefix);
        let queue = sqs::create_queue(sqs_client, &name, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("create queue {name}: {e}"));
        let topic = sns::create_topic(sns_client, &name, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
        let options = sns::SubscriptionOptions::default().with_raw_message_delivery(raw);
        let subscription = sns::subscribe_queue(sns_client, sqs_client, &topic, &queue, &options)
            .await
            .unwrap_or_else(|e| panic!("subscribe {name}: {e}"));
        Self {
            topic,
            queue,
            subscription,
        }
    }

    /// Removes the subscription, the topic and the queue.
    pub async fn delete(&self, sqs_client: &aws_sdk_sqs::Client, sns_client: &aws_sdk_sns::Client) {
        use asyncmcp::queue::{sns, sqs};
        let _ = sns::unsubscribe(sns_client, &self.subscription).await;
        let _ = sns::delete_topic(sns_client, &self.topic).await;
        let _ = sqs::delete_queue(sqs_client, &self.queue).await;
    }
}
