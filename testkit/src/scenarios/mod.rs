//! The end-to-end scenarios of the transport, written once and run on every
//! broker: a demo server (the [demo tools](crate::demo_tools)) behind a
//! request queue, and clients, crafted messages and failing outboxes in
//! front of it.
//!
//! Each scenario is an `async fn(&dyn TestBroker)` that panics when the
//! transport misbehaves; [`scenario_tests!`](crate::scenario_tests) makes one
//! test of each. They are grouped by what they show:
//!
//! * basic calls, errors, progress, cancellation, timeouts, concurrency and
//!   protocol versions;
//! * a server at work: bad input, heartbeat, shutdown, a shared reply queue;
//! * delivery guarantees: order of a call's messages, duplicates, poison
//!   requests and signed messages;
//! * identity: every caller gets its own answer;
//! * detail: which attributes replies carry, by peer;
//! * the client: what it accepts and in which order it hands it over;
//! * settling: final replies that fail, dead letters, orphan replies, and a
//!   request's life while a send stalls.

mod basics;
mod client;
mod detail;
mod final_reply;
mod guarantees;
mod identity;
mod lifetime;
mod orphans;
mod serving;
mod settling;

pub use basics::*;
pub use client::*;
pub use detail::*;
pub use final_reply::*;
pub use guarantees::*;
pub use identity::*;
pub use lifetime::*;
pub use orphans::*;
pub use serving::*;
pub use settling::*;

// What the scenario modules share through `use super::*`.
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use asyncmcp::queue::{Inbox, Outbox, QueueMessage};
use asyncmcp::server::QueueServerBuilder;
use asyncmcp::wire::session::SessionKeys;
use asyncmcp::{QueueClientTransport, QueueServer};
use rmcp::model::{
    ClientCapabilities, ClientRequest, Implementation, InitializeRequestParams, ProtocolVersion,
    Request,
};
use rmcp::service::{ClientLifecycleMode, PeerRequestOptions};
use rmcp::{RoleClient, ServiceError, ServiceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::demo_tools::{DemoServer, DemoStats};
use crate::support::{call, text_of};
use crate::{Failure, FaultyOutbox, Fixture, QueueSpec, TestBroker, eventually, next_reply};

/// Defines a module `scenarios` with one test per scenario, each running it
/// on the broker that `$broker` builds: an expression evaluated in each test
/// (in an `async` block, so it may `.await`), in the scope of the macro call.
///
/// `scenario_tests!(broker)` runs every scenario; `scenario_tests!(broker;
/// name, ...)` runs the named ones. [`broker_tests!`](crate::broker_tests)
/// runs them with the contract suite.
///
/// ```text
/// asyncmcp_testkit::scenario_tests!(SnsSqs::new(true).await; list_and_call, bad_input);
/// ```
#[macro_export]
macro_rules! scenario_tests {
    ($broker:expr; $($scenario:ident),+ $(,)?) => {
        /// The end-to-end scenarios of `asyncmcp_testkit::scenarios`.
        mod scenarios {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $scenario() {
                    $crate::__private::block_on(async {
                        $crate::scenarios::$scenario(&$broker).await;
                    });
                }
            )+
        }
    };
    ($broker:expr) => {
        $crate::scenario_tests!($broker;
                list_and_call,
                is_error_result_vs_jsonrpc_error,
                progress_is_delivered,
                notifications_precede_the_response,
                early_response_waits_for_its_notifications,
                cancellation_stops_the_handler,
                timeouts,
                concurrency,
                protocol_versions,
                bad_input,
                heartbeat_keeps_long_calls_hidden,
                graceful_shutdown,
                shared_reply_queue,
                duplicates_run_once,
                poison_requests_are_dead_lettered_with_a_reason,
                final_reply_failing_once_is_replayed,
                final_reply_refused_for_good_removes_the_request,
                final_reply_failing_on_the_last_delivery_dead_letters,
                final_reply_failing_on_every_delivery_is_dead_lettered_once,
                signed_messages,
                stale_signed_requests_are_refused,
                clients_from_one_config_get_their_own_answers,
                spoofed_ids_get_their_own_answers,
                refusals_cannot_fail_another_clients_call,
                duplicates_of_running_requests_are_not_dead_lettered,
                signing_client_drops_bad_replies,
                optional_signatures_excuse_only_a_missing_one,
                signing_keys_rotate_step_by_step,
                order_wait_releases_a_response_whose_notifications_were_lost,
                a_duplicated_notification_counts_once,
                orphan_replies_are_removed_after_the_threshold,
                dropping_a_client_gives_back_what_its_poll_took,
                dead_letters_keep_within_ten_attributes,
                dead_letters_too_large_are_settled,
                dead_letters_drop_fifo_ids_for_standard_queues,
                dead_letter_notice_failing_once_is_replayed,
                error_reply_failing_once_is_sent_again,
                failed_reply_comes_back_soon,
                heartbeat_runs_through_a_stalled_reply,
                visibility_ceiling_ends_the_call_in_time,
                server_to_client_requests_fail_at_once,
                a_stalled_reply_keeps_deadline_and_shutdown,
                reply_attributes_follow_the_peer,
        );
    };
}
