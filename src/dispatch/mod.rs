//! The worker: a loop around one testable step, [`Dispatcher::dispatch_once`].
//!
//! One step claims a batch (leased, see [`Store::claim`]), then for each
//! message, concurrently up to `worker.concurrency`: checks the recipient's
//! local send window, renders the template, waits on the gateway's rate
//! limit, and sends. Outcomes are recorded in one transaction per batch. The
//! carrier is never called inside a database transaction, and a failure of
//! one message (even a template error) only ever affects that message.

pub mod breaker;
pub mod limits;
pub mod retry;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use self::breaker::{Breaker, BreakerState};
use self::limits::{GatewayLimits, Limit};
use crate::campaign::Window;
use crate::config::{SmsSettings, WorkerSettings};
use crate::domain::{MsisdnError, Operator};
use crate::gateway::{Gateway, OutboundSms, SendError};
use crate::metrics::{FailureReason, GatewayMetrics, METRICS, NO_GATEWAY};
use crate::render::{RenderContext, Renderer};
use crate::status::FlagReason;
use crate::store::{now_ms, ClaimedMessage, QueuePosition, RetryCause, SendOutcome, Store};

/// One gateway with its rate limits, its circuit breaker and the operators
/// routed to it.
pub struct Route {
    pub gateway: Arc<dyn Gateway>,
    pub limits: GatewayLimits,
    pub breaker: Breaker,
    /// Empty: any operator.
    pub operators: Vec<Operator>,
    /// This gateway's `/metrics` counters, looked up once.
    pub metrics: Arc<GatewayMetrics>,
}

impl Route {
    pub fn new(
        gateway: Arc<dyn Gateway>,
        messages_per_sec: u32,
        segments_per_sec: u32,
        operators: Vec<Operator>,
    ) -> Route {
        let metrics = METRICS.gateways.get(gateway.name());
        metrics.rate_limit_per_sec.store(
            u64::from(messages_per_sec),
            std::sync::atomic::Ordering::Relaxed,
        );
        Route {
            metrics,
            gateway,
            limits: GatewayLimits::new(messages_per_sec, segments_per_sec),
            breaker: Breaker::new(20, Duration::from_secs(30)),
            operators,
        }
    }

    /// Opens the breaker after `threshold` consecutive transient failures
    /// (0 = never) for `cool_down`.
    pub fn with_breaker(mut self, threshold: u32, cool_down: Duration) -> Route {
        self.breaker = Breaker::new(threshold, cool_down);
        self
    }
}

/// Picks a gateway by the number's operator; the first route is the default.
/// Holds the global cap over all gateways.
pub struct Router {
    routes: Vec<Route>,
    global: Limit,
}

impl Router {
    /// `routes` must not be empty (`App::start` builds a router only for
    /// workers, which refuse to start without a gateway).
    pub fn new(routes: Vec<Route>, global_per_sec: u32) -> Router {
        assert!(!routes.is_empty(), "a router needs at least one route");
        Router {
            routes,
            global: Limit::new(global_per_sec),
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// This process's share of every rate when `workers` processes are alive.
    pub fn set_share(&self, workers: u32) {
        self.global.set_share(workers);
        for r in &self.routes {
            r.limits.set_share(workers);
        }
    }

    /// Messages per second this process may send in all, when every route
    /// is rate-limited (or the global cap is); `None` when unlimited.
    pub fn rate_hint(&self) -> Option<f64> {
        let limited = |l: &Limit| l.is_limited().then(|| l.effective());
        let routes: Option<f64> = self
            .routes
            .iter()
            .map(
                |r| match (limited(&r.limits.messages), limited(&r.limits.segments)) {
                    (Some(m), Some(s)) => Some(m.min(s)),
                    (m, s) => m.or(s),
                },
            )
            .sum();
        match (routes, limited(&self.global)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lets throttled gateways recover after a calm spell.
    pub fn recover(&self) {
        for r in &self.routes {
            r.limits.recover();
        }
    }

    /// The routes for `operator` in order of preference: those configured
    /// for it, then the default routes (no operator list), then the rest as
    /// a last resort for failover.
    pub fn candidates(&self, operator: Operator) -> impl Iterator<Item = &Route> {
        let own = self
            .routes
            .iter()
            .filter(move |r| r.operators.contains(&operator));
        let default = self.routes.iter().filter(|r| r.operators.is_empty());
        let rest = self
            .routes
            .iter()
            .filter(move |r| !r.operators.is_empty() && !r.operators.contains(&operator));
        own.chain(default).chain(rest)
    }

    /// The first candidate whose circuit breaker lets a request through, or
    /// `None` when every gateway is out of rotation.
    pub fn route(&self, operator: Operator) -> Option<&Route> {
        self.candidates(operator).find(|r| r.breaker.allow())
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StepSummary {
    pub claimed: u64,
    pub sent: u64,
    pub retried: u64,
    pub deferred: u64,
    pub failed: u64,
    /// Outcomes whose lease had been taken over (worker too slow).
    pub lease_lost: u64,
}

/// Claims, sends and records.
pub struct Dispatcher {
    store: Store,
    renderer: Arc<Renderer>,
    router: Arc<Router>,
    worker: WorkerSettings,
    sms: SmsSettings,
    /// This worker's lease owner id.
    owner: String,
    /// The clock send windows are judged by (tests inject one).
    clock: fn() -> i64,
    /// `/metrics` counters of failures before a gateway is chosen.
    unrouted: Arc<GatewayMetrics>,
    /// Where the next claim starts ([`ClaimCursor`]).
    cursor: std::sync::Mutex<Option<ClaimCursor>>,
}

/// Where a dispatcher's last claim ended, and what it knew then. The next
/// claim goes on from there ([`Store::claim_from`]) rather than walking the
/// queue from its head, while nothing can have become due behind it: rows
/// become due behind the cursor only through a write that wakes the
/// dispatchers (an enqueue, a resend, a resume, a re-registration) or
/// through a claim elsewhere that failed, clocks that disagree between
/// machines, a missed notification. So the cursor is dropped on any
/// wake-up, when a claim from it comes back short (the queue ahead is
/// drained: look behind), and after [`CURSOR_TTL`] whatever happened. A
/// row behind it waits at most that long.
#[derive(Debug, Clone, Copy)]
struct ClaimCursor {
    at: QueuePosition,
    wake_count: u64,
    set: std::time::Instant,
}

/// Longest a claim cursor is trusted (see [`ClaimCursor`]).
const CURSOR_TTL: Duration = Duration::from_secs(2);

impl Dispatcher {
    pub fn new(
        store: Store,
        renderer: Arc<Renderer>,
        router: Arc<Router>,
        worker: WorkerSettings,
        sms: SmsSettings,
    ) -> Dispatcher {
        let owner = process_id();
        Dispatcher {
            store,
            renderer,
            router,
            worker,
            sms,
            owner,
            clock: now_ms,
            unrouted: METRICS.gateways.get(NO_GATEWAY),
            cursor: std::sync::Mutex::new(None),
        }
    }

    /// Judges send windows by `clock` instead of the system time (tests:
    /// "it is 07:30 WIB now").
    pub fn with_clock(mut self, clock: fn() -> i64) -> Dispatcher {
        self.clock = clock;
        self
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims one batch, sends it, records the outcomes.
    pub async fn dispatch_once(&self) -> anyhow::Result<StepSummary> {
        let (mut summary, outcomes) = self.send_batch().await?;
        self.record(&outcomes, &mut summary).await?;
        Ok(summary)
    }

    /// Claims one batch and sends it; the outcomes are still to be recorded.
    async fn send_batch(&self) -> anyhow::Result<(StepSummary, Vec<SendOutcome>)> {
        let lease_ms = (self.worker.lease_secs * 1000) as i64;
        // Under a rate limit, claim about one second's worth: a pause or
        // cancel bites within a second, and the batch ends long before its
        // lease does.
        let limit = match self.router.rate_hint() {
            Some(rate) => (rate.ceil() as u32).clamp(1, self.worker.batch_size),
            None => self.worker.batch_size,
        };
        let claiming = std::time::Instant::now();
        let wake_count = self.store.wake_count();
        let from = self
            .cursor
            .lock()
            .expect("cursor lock")
            .take()
            .filter(|c| c.wake_count == wake_count && c.set.elapsed() < CURSOR_TTL);
        let batch = self
            .store
            .claim_from(&self.owner, limit, now_ms() + lease_ms, from.map(|c| c.at))
            .await?;
        METRICS.claim_latency.record(claiming.elapsed());
        // A full batch: go on after its last row next time (the same
        // wake-up count and age, when it came from a cursor). A short one:
        // from the head.
        if batch.len() as u32 >= limit {
            if let Some(at) = batch.iter().map(|m| m.position).max() {
                *self.cursor.lock().expect("cursor lock") = Some(ClaimCursor {
                    at,
                    wake_count: from.map_or(wake_count, |c| c.wake_count),
                    set: from.map_or(claiming, |c| c.set),
                });
            }
        }
        let mut summary = StepSummary {
            claimed: batch.len() as u64,
            ..Default::default()
        };
        if batch.is_empty() {
            return Ok((summary, vec![]));
        }
        let work = futures::stream::iter(batch)
            .map(|m| self.process(m))
            .buffer_unordered(self.worker.concurrency)
            .collect::<Vec<SendOutcome>>();
        tokio::pin!(work);
        // A slow gateway must not let the lease run out under a live
        // worker: renew it every third of its length until the batch ends.
        let mut renew =
            tokio::time::interval(Duration::from_millis((lease_ms / 3).max(100) as u64));
        renew.tick().await;
        let outcomes = loop {
            tokio::select! {
                outcomes = &mut work => break outcomes,
                _ = renew.tick() => {
                    if let Err(e) = self.store.renew_leases(&self.owner, now_ms() + lease_ms).await {
                        warn!(error = %e, "renewing leases failed");
                    }
                }
            }
        };
        for o in &outcomes {
            let counter = match o {
                SendOutcome::Sent { .. } => {
                    summary.sent += 1;
                    &METRICS.sent
                }
                SendOutcome::Retry { cause, .. } => {
                    summary.retried += 1;
                    if *cause == RetryCause::Throttled {
                        METRICS.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    &METRICS.retried
                }
                SendOutcome::Defer { .. } => {
                    summary.deferred += 1;
                    &METRICS.deferred
                }
                SendOutcome::Failed { .. } => {
                    summary.failed += 1;
                    &METRICS.failed
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        Ok((summary, outcomes))
    }

    /// Writes down what happened to a batch, with retries.
    async fn record(
        &self,
        outcomes: &[SendOutcome],
        summary: &mut StepSummary,
    ) -> anyhow::Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        // These sends happened: try hard to write them down. If recording
        // keeps failing the leases expire and (at-least-once) the messages
        // go out again, which is the bounded duplicate the policy accepts.
        let mut tries = 0;
        summary.lease_lost = loop {
            match self.store.record_outcomes(&self.owner, outcomes).await {
                Ok(lost) => break lost,
                Err(e) if tries < 8 => {
                    tries += 1;
                    warn!(error = %e, tries, "recording a batch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(50 << tries.min(6))).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if summary.lease_lost > 0 {
            warn!(
                lost = summary.lease_lost,
                "outcomes arrived after their lease expired; raise worker.lease_secs"
            );
        }
        debug!(?summary, "batch done");
        Ok(())
    }

    /// Everything that happens to one message, ending in its outcome. Its
    /// span is DEBUG (see `HttpGateway::send`): what is logged above DEBUG
    /// here names the message itself.
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(message.id = m.id, attempt = m.attempts)
    )]
    async fn process(&self, mut m: ClaimedMessage) -> SendOutcome {
        let now = (self.clock)();
        let window = Window {
            start_min: m.window_start,
            end_min: m.window_end,
        };
        if !window.is_open(now, m.utc_offset) {
            return SendOutcome::Defer {
                id: m.id,
                until: window.next_open(now, m.utc_offset),
            };
        }
        // Moved out: the message keeps what the rest of this reads.
        let to = match std::mem::replace(&mut m.phone, Err(MsisdnError::Empty)) {
            Ok(to) => to,
            Err(e) => {
                self.unrouted.failure(FailureReason::InvalidNumber);
                return SendOutcome::Failed {
                    id: m.id,
                    gateway: None,
                    handed_over: false,
                    error: format!("phone: {e}"),
                    reason: FlagReason::InvalidNumber,
                };
            }
        };
        // The worker's fields go to the template; the message keeps what
        // the rest of this function reads.
        let ctx = RenderContext {
            full_name: std::mem::take(&mut m.full_name),
            nik_last4: std::mem::take(&mut m.nik_last4),
            profession: std::mem::take(&mut m.profession),
            facility_code: std::mem::take(&mut m.facility_code),
            province_name: m.province.map(|p| p.name().to_string()).unwrap_or_default(),
        };
        // A number nobody has validated never sees NIK digits.
        let template = if m.to_unvalidated {
            crate::store::UNVALIDATED_TEMPLATE
        } else {
            m.template.as_str()
        };
        let text = match self.renderer.render_owned(template, ctx) {
            Ok(t) => t,
            Err(e) => {
                warn!(message.id = m.id, error = %e, "template failed for this message");
                self.unrouted.failure(FailureReason::RenderFailed);
                return SendOutcome::Failed {
                    id: m.id,
                    gateway: None,
                    handed_over: false,
                    error: format!("template: {e}"),
                    reason: FlagReason::RenderFailed,
                };
            }
        };
        if text.segments() > self.sms.hard_max_segments {
            self.unrouted.failure(FailureReason::RenderFailed);
            return SendOutcome::Failed {
                id: m.id,
                gateway: None,
                handed_over: false,
                error: format!(
                    "rendered text needs {} segments, more than sms.hard_max_segments = {}",
                    text.segments(),
                    self.sms.hard_max_segments
                ),
                reason: FlagReason::RenderFailed,
            };
        }
        let Some(route) = self.router.route(to.operator()) else {
            // Every gateway is out of rotation: wait for a breaker to
            // half-open, without using an attempt.
            return SendOutcome::Defer {
                id: m.id,
                until: now + 5_000,
            };
        };
        let waited =
            route.limits.acquire(text.segments()).await + self.router.global.acquire(1).await;
        if !waited.is_zero() {
            route.metrics.rate_wait(waited);
        }
        // The gateway may have gone out of rotation while we waited for the
        // rate limit: do not add to its failures, come back shortly.
        if route.breaker.state() == BreakerState::Open {
            return SendOutcome::Defer {
                id: m.id,
                until: (self.clock)() + 5_000,
            };
        }
        // The rate limit may have held us past the campaign deadline: never
        // send late. Housekeeping expires it and flags `deadline`.
        if let Some(deadline) = m.deadline_at {
            let now = (self.clock)();
            if now >= deadline {
                return SendOutcome::Defer {
                    id: m.id,
                    until: now,
                };
            }
        }
        let gateway = route.gateway.name().to_string();
        let encoding = text.encoding().as_str();
        let segments = text.segments() as i32;
        let sms = OutboundSms {
            message_id: m.id,
            to,
            text,
        };
        let started = std::time::Instant::now();
        let result = route.gateway.send(&sms).await;
        let took = started.elapsed();
        METRICS.send_latency.record(took);
        route.metrics.latency.record(took);
        let transition = match &result {
            Ok(_) | Err(SendError::Permanent { .. }) => route.breaker.success(),
            Err(SendError::Throttled { .. }) => route.breaker.throttled(),
            Err(SendError::Retryable { .. }) => route.breaker.failure(),
            // Every request to this gateway would fail the same way: out
            // of rotation now, not after `breaker_threshold` more tries.
            Err(SendError::GatewayFault { .. }) => route.breaker.fault(),
        };
        if let Some(t) = transition {
            self.breaker_moved(route, t, result.as_ref().err());
        }
        // Each outcome is counted once for `/metrics`: a transient failure
        // by its cause, or as `retries_exhausted` when it was the last try.
        match result {
            Ok(acc) => {
                route.metrics.sends.fetch_add(1, Ordering::Relaxed);
                SendOutcome::Sent {
                    id: m.id,
                    gateway,
                    gateway_message_id: acc.gateway_message_id,
                    body: sms.text.into_string(),
                    encoding,
                    segments,
                }
            }
            Err(SendError::Permanent {
                reason,
                invalid_number,
            }) => {
                let (flag, counted) = if invalid_number {
                    (FlagReason::InvalidNumber, FailureReason::InvalidNumber)
                } else {
                    (FlagReason::Rejected, FailureReason::Rejected)
                };
                route.metrics.failure(counted);
                SendOutcome::Failed {
                    id: m.id,
                    gateway: Some(gateway),
                    error: format!("permanent: {reason}"),
                    reason: flag,
                    handed_over: true,
                }
            }
            Err(e) => {
                let (cause, retry_after) = match &e {
                    SendError::Throttled { retry_after } => (RetryCause::Throttled, *retry_after),
                    SendError::GatewayFault { .. } => (RetryCause::GatewayFault, None),
                    _ => (RetryCause::Transient, None),
                };
                let throttled = cause == RetryCause::Throttled;
                if throttled {
                    route.limits.throttled();
                }
                // A gateway fault never gives a message up: neither its
                // attempts nor its age are its own doing, and flagging its
                // worker `retries_exhausted` would blame the wrong party.
                // The breaker and the campaign's auto-pause stop the
                // traffic; the deadline, if any, still expires it.
                let too_old = cause != RetryCause::GatewayFault
                    && now_ms() - m.created_at > (self.worker.max_age_secs * 1000) as i64;
                if too_old
                    || (cause.uses_attempt() && m.attempts as u32 >= self.worker.max_attempts)
                {
                    route.metrics.failure(FailureReason::RetriesExhausted);
                    return SendOutcome::Failed {
                        id: m.id,
                        gateway: Some(gateway),
                        error: if too_old {
                            format!("{} (older than worker.max_age_secs)", e.short())
                        } else {
                            format!("{} (after {} attempts)", e.short(), m.attempts)
                        },
                        reason: FlagReason::RetriesExhausted,
                        handed_over: e.may_have_reached_carrier(),
                    };
                }
                route.metrics.failure(FailureReason::of_send_error(&e));
                let delay = retry::retry_delay(
                    m.attempts.max(1) as u32,
                    Duration::from_millis(self.worker.backoff_initial_ms),
                    Duration::from_millis(self.worker.backoff_max_ms),
                    retry_after,
                );
                debug!(error = %e.short(), delay_ms = delay.as_millis() as u64, "will retry");
                SendOutcome::Retry {
                    id: m.id,
                    gateway: Some(gateway),
                    next_attempt_at: now_ms() + delay.as_millis() as i64,
                    error: e.short(),
                    cause,
                    handed_over: e.may_have_reached_carrier(),
                }
            }
        }
    }

    /// Logs a breaker transition and records it for `gateways status`, with
    /// the error that moved it (e.g. `gateway fault (tls): … expired`), so
    /// an operator sees why a gateway is out without reading logs.
    fn breaker_moved(&self, route: &Route, t: breaker::Transition, error: Option<&SendError>) {
        let name = route.gateway.name().to_string();
        if t.to == BreakerState::Open {
            METRICS.circuit_opens.fetch_add(1, Ordering::Relaxed);
            route.metrics.circuit_opens.fetch_add(1, Ordering::Relaxed);
            warn!(gateway = %name, failures = route.breaker.consecutive_failures(), "gateway out of rotation (circuit open)");
        } else {
            info!(gateway = %name, from = t.from.as_str(), to = t.to.as_str(), "gateway circuit changed");
        }
        let store = self.store.clone();
        let owner = self.owner.clone();
        let mut detail = format!(
            "{} consecutive failures",
            route.breaker.consecutive_failures()
        );
        if let (BreakerState::Open, Some(e)) = (t.to, error) {
            detail.push_str("; last: ");
            detail.push_str(&e.short());
        }
        tokio::spawn(async move {
            if let Err(e) = store
                .set_gateway_state(&name, t.to.as_str(), &detail, &owner)
                .await
            {
                warn!(error = %e, "recording gateway state failed");
            }
        });
    }

    /// Runs steps until `shutdown` turns true. An idle worker sleeps for
    /// `poll_ms` or until woken ([`Store::due_watch`]: an enqueue, resend or
    /// resume here or, on PostgreSQL, in any process), never spins. On shutdown
    /// the batch in hand is finished and recorded first.
    ///
    /// Pipelined: a batch's outcomes are recorded while the next batch is
    /// claimed and sent, so the gateway does not sit idle (and the rate
    /// limiter does not bank credit for a burst) while the database writes.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        info!(owner = %self.owner, "worker started");
        let mut due = self.store.due_watch();
        let mut unrecorded: Option<(StepSummary, Vec<SendOutcome>)> = None;
        while !*shutdown.borrow() {
            let previous = unrecorded.take();
            let (next, recorded) = tokio::join!(self.send_batch(), async {
                match previous {
                    Some((mut summary, outcomes)) => self.record(&outcomes, &mut summary).await,
                    None => Ok(()),
                }
            });
            if let Err(e) = recorded {
                // The leases run out and the policy decides (at-least-once:
                // sent again; at-most-once: `unknown` and flagged).
                error!(error = %e, "recording a batch failed for good");
            }
            let pause = match next {
                Ok((summary, outcomes)) if summary.claimed > 0 => {
                    unrecorded = Some((summary, outcomes));
                    continue;
                }
                Ok(_) => Duration::from_millis(self.worker.poll_ms),
                Err(e) => {
                    error!(error = %e, "dispatch step failed; retrying shortly");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = due.changed() => {}
                _ = shutdown.changed() => {}
            }
        }
        if let Some((mut summary, outcomes)) = unrecorded {
            if let Err(e) = self.record(&outcomes, &mut summary).await {
                error!(error = %e, "recording the last batch failed");
            }
        }
        info!(owner = %self.owner, "worker stopped");
    }
}

/// Periodic bookkeeping shared by every process: campaign state, expired
/// leases, receipt timeouts, notices a new suppression covers, old
/// idempotency keys. The other purges run beside it ([`retention`]). Each statement is
/// idempotent, so several processes running it at once is harmless.
pub async fn housekeeping(
    store: Store,
    worker: WorkerSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        if let Err(e) = housekeeping_once(&store, &worker).await {
            error!(error = %e, "housekeeping failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One round of [`housekeeping`].
pub async fn housekeeping_once(store: &Store, worker: &WorkerSettings) -> anyhow::Result<()> {
    let expired = store
        .expire_leases(worker.policy, worker.max_attempts)
        .await?;
    if expired > 0 {
        warn!(expired, policy = ?worker.policy, "leases expired (a worker died or stalled)");
    }
    let cutoff = now_ms() - (worker.receipt_timeout_secs * 1000) as i64;
    let swept = store.sweep_no_receipt(cutoff).await?;
    if swept > 0 {
        info!(swept, "messages without a receipt flagged no_receipt");
    }
    let matched = store
        .apply_pending_receipts((worker.receipt_timeout_secs * 1000) as i64)
        .await?;
    if matched > 0 {
        info!(
            matched,
            "receipts that arrived before their send was recorded applied"
        );
    }
    let expired = store.expire_past_deadline().await?;
    if expired > 0 {
        warn!(
            expired,
            "campaign deadline passed: unsent messages expired and flagged"
        );
    }
    for paused in store
        .auto_pause(worker.auto_pause_window, worker.auto_pause_threshold)
        .await?
    {
        warn!(campaign = paused.campaign_id, reason = %paused.reason, "campaign auto-paused");
    }
    // A campaign enqueue that raced a suppression being added queued
    // notices the add could not see: cancel them now.
    store.cancel_recently_suppressed().await?;
    store.advance_campaigns().await?;
    let retention_ms =
        i64::try_from(worker.idempotency_retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let purged = store
        .purge_idempotency_keys(now_ms() - retention_ms)
        .await?;
    if purged > 0 {
        info!(purged, "idempotency keys past their retention deleted");
    }
    // Failed chatbot attempts older than their counting window count for
    // nothing: forget them (locks stay, for the record).
    store
        .purge_reregistration_failures(now_ms() - crate::store::FAILURE_WINDOW_MS)
        .await?;
    Ok(())
}

/// Retention ([`crate::store::RetentionPolicy`]): one bounded batch per
/// kind every `interval`, and again on the next housekeeping beat (500 ms)
/// while a batch comes back full, so a backlog is worked off steadily
/// without long statements beside the sending.
pub async fn retention(
    store: Store,
    policy: crate::store::RetentionPolicy,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let pause = match store.retention_step(&policy).await {
            Ok(step) => {
                if step.total() > 0 {
                    info!(
                        receipt_payloads = step.receipt_payloads,
                        message_data = step.message_data,
                        attempts = step.attempts,
                        audit = step.audit,
                        idempotency_keys = step.idempotency_keys,
                        "retention: records past their period purged"
                    );
                }
                if step.more {
                    Duration::from_millis(500)
                } else {
                    interval
                }
            }
            Err(e) => {
                error!(error = %e, "retention failed; retrying");
                interval.min(Duration::from_secs(5))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Registers this process as a live worker every two seconds, takes its
/// share of every rate, lets throttled gateways recover; deregisters on
/// shutdown so the others take over its share at once.
pub async fn heartbeat(
    store: Store,
    router: Arc<Router>,
    id: String,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        match store.heartbeat(&id, 6_000).await {
            Ok(live) => router.set_share(live as u32),
            Err(e) => warn!(error = %e, "worker heartbeat failed"),
        }
        router.recover();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => {}
        }
    }
    let _ = store.deregister(&id).await;
}

/// A process-wide worker id: host, pid and a random suffix.
pub fn process_id() -> String {
    format!(
        "{}-{}-{}",
        hostname(),
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "worker".into())
}
