//! Amazon SNS topics, through `aws-sdk-sns` (feature `sns`).
