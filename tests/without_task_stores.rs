//! A plain `cargo test` leaves out the SQLite and S3 task store tests
//! (tests/task_store_sqlite.rs, tests/task_store_s3.rs), which need features
//! `tasks-sqlite` and `tasks-s3`. Rather than let such a run pass with them
//! missing, this test fails and says what to run instead. Its name sorts it
//! after the other test files, so they have run by then. With both features
//! on (as in `cargo test --all-features`) the file holds no test.

#[cfg(not(all(feature = "tasks-sqlite", feature = "tasks-s3")))]
#[test]
fn the_task_store_tests_need_features_tasks_sqlite_and_tasks_s3() {
    panic!(
        "this build leaves out the SQLite and S3 task store tests (tests/task_store_sqlite.rs, \
         tests/task_store_s3.rs), which need features `tasks-sqlite` and `tasks-s3`. Run \
         `scripts/test.sh` (it starts LocalStack with S3), or `cargo test --all-features`."
    );
}
