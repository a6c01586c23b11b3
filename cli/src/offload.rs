//! `--offload-bucket BUCKET[/PREFIX]` (serve, call, tools, proxy): message
//! bodies over the queue's limit go through S3 as claim checks (the
//! library's `OffloadLayer`, docs/offload.md). Both ends of a call need it.

use asyncmcp::queue::layer::S3Offload;

/// Where offloaded bodies go: a bucket and a key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffloadBucket {
    bucket: String,
    prefix: String,
}

/// Parses `BUCKET` or `BUCKET/PREFIX` (the prefix ends with `/` if it has
/// none: `b/mcp` writes `mcp/<uuid>`).
pub(crate) fn parse_offload_bucket(text: &str) -> Result<OffloadBucket, String> {
    let text = text.trim().trim_start_matches("s3://");
    let (bucket, prefix) = text.split_once('/').unwrap_or((text, ""));
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid {
        return Err(format!(
            "`{bucket}` is not an S3 bucket name (3 to 63 lower-case letters, digits, '-' or '.')"
        ));
    }
    let mut prefix = prefix.to_owned();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    Ok(OffloadBucket {
        bucket: bucket.to_owned(),
        prefix,
    })
}

impl OffloadBucket {
    /// The layer's settings, with an S3 client from the environment.
    pub(crate) async fn settings(&self) -> S3Offload {
        S3Offload::from_env(&self.bucket).await.prefix(&self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_prefixes() {
        let parsed = |text| parse_offload_bucket(text).expect("valid");
        assert_eq!(
            parsed("my-bucket"),
            OffloadBucket {
                bucket: "my-bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(parsed("s3://my-bucket/mcp").prefix, "mcp/");
        assert_eq!(parsed("my-bucket/a/b/").prefix, "a/b/");
        for bad in ["", "ab", "My_Bucket", "a bucket/x"] {
            assert!(parse_offload_bucket(bad).is_err(), "{bad}");
        }
    }
}
