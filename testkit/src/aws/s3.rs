//! S3 on LocalStack for the S3 task store's and the offload layer's tests (feature `s3`): a
//! client with path-style addressing (LocalStack serves buckets on paths)
//! and a bucket per test, emptied and removed after.

use super::{LocalStack, localstack, sdk_config_for, service_up};

/// An S3 client for `localstack`, path-style. Panics, saying what to run,
/// when that LocalStack does not run S3 (one started before S3 joined
/// `localstack/start.sh`'s services).
pub async fn s3_client(localstack: &LocalStack) -> aws_sdk_s3::Client {
    match service_up(&localstack.endpoint, "s3").await {
        Ok(true) => {}
        Ok(false) => panic!(
            "the LocalStack at {} does not run S3, which the S3 task store's tests need: \
             restart it with `localstack/stop.sh && localstack/start.sh` (SERVICES=sqs,sns,s3), \
             or run `scripts/test.sh`, which starts one with S3",
            localstack.endpoint
        ),
        Err(err) => panic!("LocalStack at {}: {err}", localstack.endpoint),
    }
    let config = sdk_config_for(&localstack.endpoint).await;
    let s3 = aws_sdk_s3::config::Builder::from(&config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(s3)
}

/// A bucket named `<prefix>-<uuid>` (lower case, at most 63 characters, as
/// S3 wants), on this test binary's LocalStack.
#[derive(Debug, Clone)]
pub struct TestBucket {
    /// A client for it.
    pub client: aws_sdk_s3::Client,
    /// Its name.
    pub name: String,
}

impl TestBucket {
    /// Creates the bucket.
    pub async fn create(prefix: &str) -> Self {
        let client = s3_client(localstack().await).await;
        let prefix: String = prefix
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(30)
            .collect();
        let name = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
        client
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateBucket {name}: {e:?}"));
        Self { client, name }
    }

    /// The keys in the bucket (the first 1000).
    pub async fn keys(&self) -> Vec<String> {
        let listed = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListObjectsV2 {}: {e:?}", self.name));
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    /// Waits (up to 20 s) until the bucket holds no object; returns what is
    /// left (deletions after a message is settled are not instant).
    pub async fn drained(&self) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let left = self.keys().await;
            if left.is_empty() || tokio::time::Instant::now() > deadline {
                return left;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Deletes every object, then the bucket.
    pub async fn delete(&self) {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.unwrap_or_else(|e| panic!("ListObjectsV2 {}: {e:?}", self.name));
            for object in page.contents() {
                if let Some(key) = object.key() {
                    self.client
                        .delete_object()
                        .bucket(&self.name)
                        .key(key)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("DeleteObject {key}: {e:?}"));
                }
            }
        }
        self.client
            .delete_bucket()
            .bucket(&self.name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DeleteBucket {}: {e:?}", self.name));
    }
}
