//! A plain `cargo test` builds the default features only (`sqs`), which leaves
//! out tests/sns.rs, tests/sns_queue.rs and the SNS tests of tests/interop.rs
//! and tests/examples.rs. Rather than let such a run pass with those tests
//! missing, this test fails and says what to run instead. Its name sorts it
//! after the other test files, so they have run by then. With `sns` on (as in
//! `cargo test --all-features`) the file holds no test.

#[cfg(not(feature = "sns"))]
#[test]
fn the_sns_tests_need_feature_sns() {
    panic!(
        "this build leaves out the SNS tests (tests/sns.rs, tests/sns_queue.rs and the SNS \
         cases of tests/interop.rs and tests/examples.rs), which need feature `sns`. Run \
         `scripts/test.sh` (it starts LocalStack), or `cargo test --all-features`."
    );
}
