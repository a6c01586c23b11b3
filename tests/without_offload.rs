//! A plain `cargo test` leaves out the S3 offload tests (tests/offload/),
//! which need feature `offload`. Rather than let such a run pass with them
//! missing, this test fails and says what to run instead. With the feature
//! on (as in `cargo test --all-features`) the file holds no test.

#[cfg(not(feature = "offload"))]
#[test]
fn the_offload_tests_need_feature_offload() {
    panic!(
        "this build leaves out the S3 offload tests (tests/offload/), which need feature \
         `offload`. Run `scripts/test.sh` (it starts LocalStack with S3 and installs the Python \
         extended client), or `cargo test --test offload --features offload,sns`."
    );
}
