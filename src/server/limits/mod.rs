//! Per-tool concurrency and rate limits, and a cap per caller, that keep
//! the queue as the buffer.
//!
//! A downstream behind a tool has its own capacity. A `tools/call` for a
//! tool at its limit is not held in memory or in one of the server's
//! in-flight slots: it is **put back in the queue** with a visibility delay
//! sized to its expected wait (`ChangeMessageVisibility`), and its slot
//! frees at once for requests of other tools. Set with
//! [`QueueServerBuilder::tool_limit`](crate::server::QueueServerBuilder::tool_limit),
//! `tool_rate`, `default_tool_limit`, `default_tool_rate`, `caller_limit`
//! and `max_limit_wait`; see `docs/limits.md` for the whole story.
//!
//! # Semantics
//!
//! * **Per replica.** Every limit counts the calls of this process only:
//!   three replicas with `tool_limit("slow", 2)` run up to six `slow` calls
//!   at once. No global limit is offered: an honest one needs a shared
//!   counter with leases (a store every replica writes on each call start
//!   and end, and that survives a replica dying mid-call), which costs a
//!   round trip per call; divide the limit by the replica count instead.
//! * **Only `tools/call`.** Other methods are never limited. A call run as
//!   a [task](crate::tasks) is limited like any call, before its task is
//!   created; its permit is held until the task's run ends.
//! * **Where.** After a duplicate of a running or answered request is held
//!   or replayed (a replay costs the downstream nothing), before the
//!   dead-letter check. The permit is held for the run and released when
//!   it ends; the run time feeds a moving average per tool.
//! * **Delay.** For a concurrency limit, about the average run time (before
//!   a run has ended, as long as the oldest running call has run) times
//!   the rounds until the call's turn (`ceil((ahead + 1) / limit)`, where
//!   `ahead` counts the calls this replica put back for the tool before
//!   it); for a rate limit, the time until a token is free for its place;
//!   for the caller cap, one average run. Whole seconds, from 1 s to
//!   15 min, and never past the call's maximum wait. Order among waiting
//!   calls is approximate: a slot that frees goes to whichever call comes
//!   first, so a slot never idles while calls wait hidden.
//! * **Maximum wait.** Counted from when the broker took the request
//!   ([`Delivery::sent_at`](crate::queue::Delivery::sent_at): SQS's
//!   `SentTimestamp`, never a message attribute). Past it the call is
//!   answered with the JSON-RPC error [`LIMIT_WAIT_EXCEEDED`] (`-32003`),
//!   whose message names the tool and the limit, and the request is
//!   deleted. With an inbox that gives no send time the wait counts from
//!   the first time this replica put the request back.
//! * **The caller** hears nothing while it waits (no progress is sent), and
//!   never an error unless the maximum wait passes.
//!
//! # Cost
//!
//! Each deferral costs one `ChangeMessageVisibility` and a share of a
//! later `ReceiveMessage` (receives take up to 10 messages). A call is put
//! back at most about `max_wait / 1 s` times, and in practice once or twice
//! per expected wait, since the delay is sized to it.
//!
//! # Dead-lettering
//!
//! A deferral is a delivery: it raises the message's receive count, which
//! the server's own dead-letter check and an SQS redrive policy count. This
//! replica keeps a bounded ledger (10,000 message ids, oldest forgotten
//! first) of the requests it put back and subtracts their
//! deferrals from the receive count, so its own deferrals never
//! dead-letter a request. Deferrals by **other replicas**, and a broker
//! **redrive policy**, still count: give the queue a high `maxReceiveCount`
//! (or none) and use asyncmcp's own dead-lettering.
//!
//! # What a sender can do with it
//!
//! Whoever can send to the request queue can already call every tool.
//!
//! * **Flooding one tool** fills its line, not the server: the calls over
//!   the limit wait in the queue and other tools go on. Each waiting call
//!   costs API calls (above), bounded per message by the maximum wait over
//!   the minimum delay; a long line costs the most for the calls at its
//!   end, whose delays are longest. A flood does delay every honest call of
//!   that tool, as any shared downstream would.
//! * **Forged tool names** fall under the default limits, each name on its
//!   own; a name's state is kept only while one of its calls runs, so made
//!   up names cannot grow memory beyond the calls running and the ledger's
//!   bound.
//! * **Forged callers.** The caller is the route's origin (session id, else
//!   `ClientId`, else reply address). Clients that share a `ClientId` share
//!   its cap. A sender that copies another caller's `ClientId` can use up
//!   that caller's share on this replica, and so hold its calls back (it
//!   could already send as that caller); with sealed sessions or
//!   signatures required, the origin cannot be copied.
//! * **Forged timestamps.** The wait is measured from the broker's send
//!   time, not a `Timestamp` attribute: a sender cannot make its call
//!   bounce for ever or make another's give up early. A replica whose clock
//!   runs far ahead of the broker's gives up early; keep clocks in sync.
//! * **FIFO queues.** A call put back holds up the rest of its message
//!   group, as any message in flight does.

pub(crate) mod gate;
mod settings;

pub(crate) use gate::{Call, Decision, Gate};
pub use settings::{DEFAULT_MAX_LIMIT_WAIT, Rate, ToolLimit, ToolLimits};

/// The JSON-RPC error code of a call that waited longer than
/// [`ToolLimits::max_wait`] for its limits; its message names the tool and
/// the limit, and `data` holds `tool`, `limit` and `waitedSeconds`.
pub const LIMIT_WAIT_EXCEEDED: rmcp::model::ErrorCode = rmcp::model::ErrorCode(-32003);
