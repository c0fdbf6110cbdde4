//! Receipts: stored raw first, then applied through the status machine.

use serde::Serialize;
use sqlx::QueryBuilder;

use super::{now_ms, with_pool, BeginKept, Column, KeptConnection, Result, Store};
use crate::gateway::{ParsedReceipt, ReceiptOutcome};
use crate::status::{FlagReason, HandOver, ReceiptMove, Status};

/// What applying a receipt did; stored in `receipts.effect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptEffect {
    /// Moved the message to a new status.
    Applied,
    /// A duplicate, or older news than what the message already says.
    Ignored,
    /// An intermediate report (accepted, buffered): kept, no status change.
    Intermediate,
    /// A code the dialect does not define: kept and counted, never guessed.
    UnknownCode,
    /// No message with that id.
    UnknownMessage,
    /// Could not be read at all.
    Malformed,
    /// Names only the gateway's id, and no send with that id is recorded
    /// yet (or names our id on a message still being sent, with no
    /// per-message MAC to prove the hand-over): kept, and applied by
    /// housekeeping once the send through this gateway lands.
    Pending,
    /// The message was handed to another gateway, never to this one: kept,
    /// counted, changes nothing.
    NotOurs,
    /// The message was never handed to any gateway (still queued, cancelled,
    /// or failed before sending): kept, counted, changes nothing.
    NotSent,
}

impl ReceiptEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptEffect::Applied => "applied",
            ReceiptEffect::Ignored => "ignored",
            ReceiptEffect::Intermediate => "intermediate",
            ReceiptEffect::UnknownCode => "unknown_code",
            ReceiptEffect::UnknownMessage => "unknown_message",
            ReceiptEffect::Malformed => "malformed",
            ReceiptEffect::Pending => "pending",
            ReceiptEffect::NotOurs => "not_ours",
            ReceiptEffect::NotSent => "not_sent",
        }
    }
}

/// A receipt row, for timelines and tests.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct StoredReceipt {
    pub id: i64,
    pub gateway: String,
    pub message_id: Option<i64>,
    pub gateway_message_id: Option<String>,
    pub raw_status: Option<String>,
    pub outcome: Option<String>,
    pub error_code: Option<String>,
    pub payload: String,
    pub received_at: i64,
    pub effect: Option<String>,
}

/// How many receipts had one effect.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EffectCount {
    /// [`ReceiptEffect::as_str`]; none for a receipt stored before its
    /// effect was decided.
    pub effect: Option<String>,
    pub count: i64,
}

/// The message status and flag a final outcome leads to.
fn target(outcome: ReceiptOutcome) -> Option<(Status, Option<FlagReason>)> {
    match outcome {
        ReceiptOutcome::Delivered => Some((Status::Delivered, None)),
        ReceiptOutcome::Undelivered => Some((Status::Undelivered, Some(FlagReason::Undelivered))),
        ReceiptOutcome::Expired => Some((Status::Expired, Some(FlagReason::Expired))),
        ReceiptOutcome::Rejected => Some((Status::Rejected, Some(FlagReason::Rejected))),
        ReceiptOutcome::InvalidNumber => Some((Status::Rejected, Some(FlagReason::InvalidNumber))),
        ReceiptOutcome::Accepted | ReceiptOutcome::Unknown => None,
    }
}

/// A gateway's message id as we compare it: carriers echo ids in another
/// case or with leading zeros dropped (Jasmin's "DLRMapNotFound" trap).
pub fn normalize_ref(id: &str) -> String {
    // Zeros are not letters: strip them first, and lowercase one copy.
    let id = id.trim();
    let unpadded = id.trim_start_matches('0');
    if unpadded.is_empty() && !id.is_empty() {
        "0".to_string()
    } else {
        unpadded.to_ascii_lowercase()
    }
}

fn outcome_from_name(s: &str) -> ReceiptOutcome {
    [
        ReceiptOutcome::Delivered,
        ReceiptOutcome::Undelivered,
        ReceiptOutcome::Expired,
        ReceiptOutcome::Rejected,
        ReceiptOutcome::InvalidNumber,
        ReceiptOutcome::Accepted,
    ]
    .into_iter()
    .find(|o| outcome_name(*o) == s)
    .unwrap_or(ReceiptOutcome::Unknown)
}

fn outcome_name(o: ReceiptOutcome) -> &'static str {
    match o {
        ReceiptOutcome::Delivered => "delivered",
        ReceiptOutcome::Undelivered => "undelivered",
        ReceiptOutcome::Expired => "expired",
        ReceiptOutcome::Rejected => "rejected",
        ReceiptOutcome::InvalidNumber => "invalid_number",
        ReceiptOutcome::Accepted => "accepted",
        ReceiptOutcome::Unknown => "unknown",
    }
}

impl Store {
    /// Keeps a receipt that could not be parsed, for the audit trail.
    pub async fn store_malformed_receipt(&self, gateway: &str, payload: &str) -> Result<i64> {
        Ok(with_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO receipts (gateway, payload, received_at, effect) VALUES ($1, $2, $3, 'malformed') RETURNING id")
            .bind(gateway).bind(payload).bind(now_ms())
            .fetch_one(p).await?))
    }

    /// Stores and applies one receipt that came through `gateway`'s
    /// gateway-wide token (see [`Store::apply_receipts`]): the status moves
    /// only where the status machine allows (duplicates and stale reports
    /// change nothing, and only a message recorded as handed to `gateway`
    /// moves), failures flag the worker, and a late `delivered` resolves
    /// the flag.
    pub async fn apply_receipt(
        &self,
        gateway: &str,
        payload: &str,
        r: &ParsedReceipt,
    ) -> Result<ReceiptEffect> {
        self.apply_one(gateway, payload, r, false).await
    }

    /// [`Store::apply_receipt`] for a receipt whose callback URL carried a
    /// verified per-message MAC for (`gateway`, `r.message_id`): evidence
    /// of a hand-over even before its outcome is recorded
    /// ([`HandOver::Signed`]).
    pub async fn apply_signed_receipt(
        &self,
        gateway: &str,
        payload: &str,
        r: &ParsedReceipt,
    ) -> Result<ReceiptEffect> {
        self.apply_one(gateway, payload, r, r.message_id.is_some())
            .await
    }

    /// One receipt through [`Store::apply_receipts`].
    async fn apply_one(
        &self,
        gateway: &str,
        payload: &str,
        r: &ParsedReceipt,
        signed: bool,
    ) -> Result<ReceiptEffect> {
        let one = IncomingReceipt {
            gateway: gateway.to_string(),
            payload: payload.to_string(),
            parsed: r.clone(),
            signed,
        };
        Ok(self.apply_receipts(&[one]).await?[0])
    }

    /// Receipts for one message, oldest first.
    pub async fn receipts_for(&self, message_id: i64) -> Result<Vec<StoredReceipt>> {
        Ok(with_pool!(self, p => sqlx::query_as::<_, StoredReceipt>(
            "SELECT id, gateway, message_id, gateway_message_id, raw_status, outcome, error_code, payload, \
             received_at, effect FROM receipts WHERE message_id = $1 ORDER BY id")
            .bind(message_id).fetch_all(p).await?))
    }

    /// Receipt counts by effect (metrics, reports).
    pub async fn receipt_effects(&self) -> Result<Vec<EffectCount>> {
        Ok(with_pool!(self, p => sqlx::query_as(
            "SELECT effect, COUNT(*) AS count FROM receipts GROUP BY effect ORDER BY effect")
            .fetch_all(p).await?))
    }
}

/// What [`Store::apply_receipts_measured`] did with each receipt of a
/// batch, in the batch's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedReceipts {
    pub effects: Vec<ReceiptEffect>,
    /// Milliseconds from the message's hand-over (its send recorded) to
    /// this receipt, for receipts that moved it to a final status.
    pub final_lags_ms: Vec<Option<i64>>,
}

/// A parsed receipt waiting to be stored and applied in a batch.
#[derive(Debug, Clone)]
pub struct IncomingReceipt {
    pub gateway: String,
    /// The callback exactly as it came (query string or form body).
    pub payload: String,
    pub parsed: ParsedReceipt,
    /// The callback's URL carried a per-message MAC that verified for
    /// (`gateway`, `parsed.message_id`) (see `gateway::callback`).
    pub signed: bool,
}

/// Rows per multi-row INSERT (9 parameters each, well under both engines'
/// parameter limits).
const INSERT_CHUNK: usize = 300;

/// What the receipts' INSERT writes for each receipt of a batch.
struct ReceiptRows<'a> {
    batch: &'a [IncomingReceipt],
    /// The message each receipt names, ours or found by the gateway's id.
    resolved: &'a [Option<i64>],
    /// Normalised gateway ids ([`normalize_ref`]).
    refs: &'a [Option<String>],
    /// Each receipt's effect, as decided before the insert.
    effects: &'a [Option<ReceiptEffect>],
    /// Messages of erased workers: their receipts keep no payload.
    erased: &'a std::collections::HashSet<i64>,
}

/// Appends `INSERT INTO receipts … ` for the receipts `rows` of a batch.
/// With `applied_in`, the statement is a part of the update's data-modifying
/// `WITH`, whose `u` returns the ids it moved: each receipt flagged there
/// is stored `applied` when its message is in `u`, as the caller decides
/// from the same rows (see [`Store::apply_batch`]), and with its decided
/// effect otherwise.
fn push_receipts_insert<'a, DB>(
    q: &mut QueryBuilder<'a, DB>,
    r: &ReceiptRows<'a>,
    rows: &[usize],
    now: i64,
    applied_in: Option<&[bool]>,
) where
    DB: super::RowsParam,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    q.push(
        "INSERT INTO receipts (gateway, message_id, gateway_message_id, raw_status, outcome, \
         error_code, payload, received_at, effect, gateway_ref) \
         SELECT column1, column2, column3, column4, column5, column6, column7, ",
    );
    q.push_bind(now);
    q.push(if applied_in.is_some() {
        ", CASE WHEN column10 AND column2 = ANY(ARRAY(SELECT id FROM u)) THEN 'applied' ELSE column8 END, \
         column9 FROM "
    } else {
        ", column8, column9 FROM "
    });
    let b = |i: usize| &r.batch[i];
    let mut columns = vec![
        Column::Text(rows.iter().map(|&i| b(i).gateway.as_str()).collect()),
        Column::OptInt8(rows.iter().map(|&i| r.resolved[i]).collect()),
        Column::OptText(
            rows.iter()
                .map(|&i| b(i).parsed.gateway_message_id.as_deref())
                .collect(),
        ),
        Column::Text(
            rows.iter()
                .map(|&i| b(i).parsed.raw_status.as_str())
                .collect(),
        ),
        Column::Text(
            rows.iter()
                .map(|&i| outcome_name(b(i).parsed.outcome))
                .collect(),
        ),
        Column::OptText(
            rows.iter()
                .map(|&i| b(i).parsed.error_code.as_deref())
                .collect(),
        ),
        Column::Text(
            rows.iter()
                .map(|&i| {
                    if r.resolved[i].is_some_and(|m| r.erased.contains(&m)) {
                        super::ERASED_TEXT
                    } else {
                        b(i).payload.as_str()
                    }
                })
                .collect(),
        ),
        Column::Text(
            rows.iter()
                .map(|&i| r.effects[i].unwrap_or(ReceiptEffect::Ignored).as_str())
                .collect(),
        ),
        Column::OptText(rows.iter().map(|&i| r.refs[i].as_deref()).collect()),
    ];
    if let Some(flags) = applied_in {
        columns.push(Column::Bool(rows.iter().map(|&i| flags[i]).collect()));
    }
    super::push_rows(q, columns);
}

impl Store {
    /// Stores and applies many receipts in one transaction, with set-based
    /// statements: the receipts and their effects commit together or not at
    /// all (the caller answers the carrier only after the commit, so a
    /// failure means the carrier retries, never a lost report). Same rules
    /// as [`Store::apply_receipt`]; receipts for the same message are
    /// applied in arrival order (one per round), so a final followed by a
    /// duplicate in one batch behaves as it would one by one.
    pub async fn apply_receipts(&self, batch: &[IncomingReceipt]) -> Result<Vec<ReceiptEffect>> {
        Ok(self.apply_receipts_measured(batch).await?.effects)
    }

    /// [`Store::apply_receipts`], also saying how long after its hand-over
    /// each message got its final receipt (for the receipt-lag histogram).
    pub async fn apply_receipts_measured(
        &self,
        batch: &[IncomingReceipt],
    ) -> Result<AppliedReceipts> {
        self.apply_batch(batch, &vec![None; batch.len()], None)
            .await
    }

    /// [`Store::apply_receipts_measured`] on the connection in `kept`, if
    /// any (see [`KeptConnection`]): for a caller applying batch after
    /// batch, such as the receipt batcher. After an error the caller
    /// discards it.
    pub async fn apply_receipts_kept(
        &self,
        kept: Option<&mut KeptConnection>,
        batch: &[IncomingReceipt],
    ) -> Result<AppliedReceipts> {
        self.apply_batch(batch, &vec![None; batch.len()], kept)
            .await
    }

    /// Applies receipts kept as `pending` whose send has since been recorded
    /// (matched by gateway and normalised gateway id), and gives up on those
    /// older than `max_age_ms` (`unknown_message`). Returns how many applied.
    pub async fn apply_pending_receipts(&self, max_age_ms: i64) -> Result<u64> {
        let now = now_ms();
        type Row = (
            i64,
            String,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
        );
        // Pending for one of two reasons: only the gateway's id, whose send
        // was not recorded yet; or our id on a message still being sent,
        // without a MAC to prove the hand-over. Either is ready once a send
        // through the receipt's gateway is recorded.
        let rows: Vec<Row> = with_pool!(self, p => sqlx::query_as(
            "SELECT r.id, r.gateway, r.message_id, r.gateway_message_id, r.raw_status, r.outcome, r.error_code, r.payload \
             FROM receipts r WHERE r.effect = 'pending' AND (EXISTS (SELECT 1 FROM messages m \
             WHERE m.gateway = r.gateway AND m.gateway_ref = r.gateway_ref) \
             OR EXISTS (SELECT 1 FROM attempts a WHERE a.message_id = r.message_id AND a.gateway = r.gateway \
             AND a.handed_over = $1)) \
             ORDER BY r.id LIMIT 500")
            .bind(true).fetch_all(p).await?);
        let mut batch = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        for (id, gateway, message_id, gmid, raw, outcome, err, payload) in rows {
            batch.push(IncomingReceipt {
                gateway,
                payload,
                signed: false,
                parsed: ParsedReceipt {
                    message_id,
                    gateway_message_id: gmid,
                    raw_status: raw.unwrap_or_default(),
                    error_code: err,
                    outcome: outcome
                        .as_deref()
                        .map(outcome_from_name)
                        .unwrap_or(ReceiptOutcome::Unknown),
                },
            });
            ids.push(Some(id));
        }
        let applied = if batch.is_empty() {
            0
        } else {
            self.apply_batch(&batch, &ids, None)
                .await?
                .effects
                .iter()
                .filter(|e| **e != ReceiptEffect::Pending)
                .count() as u64
        };
        // Given up: a gateway id never recorded is an unknown message; our
        // id never recorded as sent through this gateway is not ours.
        with_pool!(self, p => sqlx::query(
            "UPDATE receipts SET effect = CASE WHEN message_id IS NULL THEN 'unknown_message' ELSE 'not_ours' END \
             WHERE effect = 'pending' AND received_at < $1")
            .bind(now - max_age_ms).execute(p).await.map(|_| ())?);
        Ok(applied)
    }

    /// [`Store::apply_receipts`], where `stored[i]` is the id of a receipt
    /// row already kept for `batch[i]` (updated instead of inserted).
    async fn apply_batch(
        &self,
        batch: &[IncomingReceipt],
        stored: &[Option<i64>],
        kept: Option<&mut KeptConnection>,
    ) -> Result<AppliedReceipts> {
        let now = now_ms();
        let lock = self.row_lock();
        let postgres = self.backend() == super::Backend::Postgres;
        let mut effects: Vec<Option<ReceiptEffect>> = vec![None; batch.len()];
        let mut final_lags_ms: Vec<Option<i64>> = vec![None; batch.len()];
        // Rounds in which every message id appears at most once.
        let mut rounds: Vec<Vec<usize>> = vec![];
        {
            let mut seen_in: IdMap<usize> =
                IdMap::with_capacity_and_hasher(batch.len(), Default::default());
            for (i, r) in batch.iter().enumerate() {
                let round = match r.parsed.message_id {
                    Some(id) => {
                        let k = seen_in.entry(id).or_insert(0);
                        *k += 1;
                        *k - 1
                    }
                    None => 0,
                };
                if rounds.len() <= round {
                    rounds.push(vec![]);
                }
                rounds[round].push(i);
            }
        }
        let refs: Vec<Option<String>> = batch
            .iter()
            .map(|r| {
                r.parsed
                    .gateway_message_id
                    .as_deref()
                    .map(normalize_ref)
                    .filter(|s| !s.is_empty())
            })
            .collect();
        with_pool!(self, pool => {
            let mut tx = pool.begin_kept(kept).await?;
            // Receipts without our id are matched by the gateway's id.
            let mut resolved: Vec<Option<i64>> = batch.iter().map(|r| r.parsed.message_id).collect();
            let mut by_gateway: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
            for (i, r) in batch.iter().enumerate() {
                if resolved[i].is_none() && refs[i].is_some() {
                    by_gateway.entry(r.gateway.as_str()).or_default().push(i);
                }
            }
            for (gateway, idx) in &by_gateway {
                let mut q = QueryBuilder::new("SELECT id, gateway_ref FROM messages WHERE gateway = ");
                q.push_bind(*gateway);
                q.push(" AND gateway_ref");
                let wanted: Vec<String> = idx.iter().filter_map(|&i| refs[i].clone()).collect();
                super::push_in_texts(&mut q, &wanted);
                let found: std::collections::HashMap<String, i64> = q
                    .build_query_as::<(i64, String)>()
                    .fetch_all(&mut *tx)
                    .await?
                    .into_iter()
                    .map(|(id, r)| (r, id))
                    .collect();
                for &i in idx {
                    resolved[i] = refs[i].as_ref().and_then(|r| found.get(r)).copied();
                }
            }
            // Messages of erased workers (store/erasure.rs): their receipts
            // are kept without the carrier's payload, which may carry the
            // number and the text.
            let mut erased: std::collections::HashSet<i64> = Default::default();
            // The common batch (one round, every receipt new, one group of
            // deliveries) stores its receipts in the update's statement
            // (PostgreSQL); `inserted` once that happened.
            let insert_with_update = postgres
                && rounds.len() == 1
                && stored.iter().all(Option::is_none)
                && batch.len() <= INSERT_CHUNK;
            let mut inserted = false;
            for round in &rounds {
                let mut ids: Vec<i64> = round.iter().filter_map(|&i| resolved[i]).collect();
                ids.sort_unstable();
                // (status, recorded gateway ref, attempts) of each message named.
                type Known = (String, Option<String>, i64);
                let mut existing: IdMap<Known> = IdMap::default();
                // The gateways each message was handed to: attempts whose
                // outcome may have reached the carrier (`handed_over`), never
                // `messages.gateway` alone (a refused connection, a throttle
                // or a gateway fault records it too, and nothing left us).
                let mut tried = HandedOver::default();
                if !ids.is_empty() {
                    // Lock the rows up front in id order (PostgreSQL); every
                    // writer of `messages` does the same, so concurrent
                    // batches queue behind each other instead of deadlocking.
                    // The hand-over evidence comes in the same round trip.
                    let mut q = QueryBuilder::new(
                        "SELECT m.id, m.status, m.gateway_ref, CAST(m.attempts AS BIGINT), \
                         CASE WHEN m.phone LIKE 'erased:%' THEN 1 ELSE 0 END, ");
                    push_handed_over_gateways(&mut q);
                    q.push(" FROM messages m WHERE m.id");
                    super::push_in_ids(&mut q, &ids);
                    q.push(" ORDER BY m.id");
                    q.push(lock);
                    let rows = q
                        .build_query_as::<(i64, String, Option<String>, i64, i32, Option<String>)>()
                        .fetch_all(&mut *tx)
                        .await?;
                    for (id, st, gw, att, gone, handed) in rows {
                        if gone != 0 {
                            erased.insert(id);
                        }
                        tried.set(id, handed.unwrap_or_default());
                        existing.insert(id, (st, gw, att));
                    }
                    // One statement sees `attempts` as of its start: when
                    // it waited for a row's lock behind the transaction
                    // recording that row's send, the status it read is the
                    // new one (PostgreSQL re-reads a locked row) but that
                    // send's attempt is not in the hand-over column. A
                    // receipt from a gateway not seen there is decided on a
                    // second read, whose snapshot is taken now, with every
                    // writer of these rows committed (we hold their locks).
                    let mut unseen: Vec<i64> = round
                        .iter()
                        .filter_map(|&i| {
                            let id = resolved[i]?;
                            (existing.contains_key(&id) && !tried.to(id, &batch[i].gateway))
                                .then_some(id)
                        })
                        .collect();
                    if !unseen.is_empty() {
                        unseen.sort_unstable();
                        unseen.dedup();
                        let mut q = QueryBuilder::new("");
                        push_handed_over(&mut q, &unseen);
                        for (id, g) in q.build_query_as::<(i64, String)>().fetch_all(&mut *tx).await? {
                            tried.add(id, &g);
                        }
                    }
                }
                // Group the applicable receipts by the status they lead to,
                // the evidence they move it with, and their gateway.
                // (target status, flag, evidence, gateway, [(receipt index, message id)])
                type Group<'g> = (Status, Option<FlagReason>, HandOver, &'g str, Vec<(usize, i64)>);
                let mut groups: Vec<Group> = vec![];
                for &i in round {
                    let r = &batch[i].parsed;
                    let gw = batch[i].gateway.as_str();
                    let Some((id, (status, recorded_ref, attempts))) =
                        resolved[i].and_then(|id| existing.get(&id).map(|k| (id, k)))
                    else {
                        effects[i] = Some(if r.message_id.is_none() && refs[i].is_some() {
                            ReceiptEffect::Pending
                        } else {
                            ReceiptEffect::UnknownMessage
                        });
                        continue;
                    };
                    let status: Status = status.parse().map_err(|e: String| {
                        sqlx::Error::Decode(e.into())
                    })?;
                    // Without a per-message MAC, our id and the gateway's id
                    // in one receipt must name the same message.
                    if !batch[i].signed && r.message_id.is_some() {
                        if let (Some(theirs), Some(recorded)) = (&refs[i], recorded_ref) {
                            if theirs != recorded {
                                effects[i] = Some(ReceiptEffect::NotOurs);
                                continue;
                            }
                        }
                    }
                    let evidence = if tried.to(id, gw) {
                        HandOver::Recorded
                    } else if batch[i].signed && *attempts > 0 {
                        HandOver::Signed
                    } else {
                        HandOver::None
                    };
                    let not_handed = || {
                        let other = tried.to_another(id, gw);
                        if other {
                            ReceiptEffect::NotOurs
                        } else if status == Status::Sending {
                            // Being sent right now, through a gateway not
                            // recorded yet: decide once the send lands.
                            ReceiptEffect::Pending
                        } else {
                            ReceiptEffect::NotSent
                        }
                    };
                    let effect = match target(r.outcome) {
                        None if evidence == HandOver::None => Some(not_handed()),
                        None if r.outcome == ReceiptOutcome::Accepted => Some(ReceiptEffect::Intermediate),
                        None => Some(ReceiptEffect::UnknownCode),
                        Some((next, reason)) => match status.receipt_move(next, evidence) {
                            ReceiptMove::NotHandedOver => Some(not_handed()),
                            ReceiptMove::Stale => Some(ReceiptEffect::Ignored),
                            ReceiptMove::Apply => {
                                match groups.iter_mut().find(|g| g.0 == next && g.1 == reason && g.2 == evidence && g.3 == gw) {
                                    Some(g) => g.4.push((i, id)),
                                    None => groups.push((next, reason, evidence, gw, vec![(i, id)])),
                                }
                                None
                            }
                        },
                    };
                    effects[i] = effect;
                }
                for (status, reason, evidence, gw, members) in &groups {
                    // The guard derives from the status machine, and
                    // repeats the evidence in SQL (the rows are locked, so
                    // it holds; it keeps the statement honest on its own).
                    let from = Status::sql_list(&Status::receipt_sources(*status, *evidence));
                    // A delivery resolves the message's open flag, if any
                    // (`delivered_late`). On PostgreSQL in the same
                    // statement (a data-modifying `WITH`: one round trip
                    // fewer for every batch); SQLite has no such `WITH`.
                    let resolve_in_update = reason.is_none() && postgres;
                    let mut q = QueryBuilder::new(if resolve_in_update {
                        "WITH u AS (UPDATE messages SET status = "
                    } else {
                        "UPDATE messages SET status = "
                    });
                    q.push_bind(status.as_str());
                    q.push(", final_at = ");
                    q.push_bind(now);
                    q.push(", updated_at = ");
                    q.push_bind(now);
                    q.push(", last_error = ");
                    q.push_bind(reason.map(|r| format!("receipt: {r}")));
                    q.push(" WHERE id");
                    let mut sorted: Vec<i64> = members.iter().map(|m| m.1).collect();
                    sorted.sort_unstable();
                    super::push_in_ids(&mut q, &sorted);
                    q.push(format!(" AND status IN ({from})"));
                    match evidence {
                        HandOver::Recorded => push_handed_over_to(&mut q, &sorted, gw),
                        HandOver::Signed => {
                            q.push(" AND attempts > 0");
                        }
                        HandOver::None => {
                            q.push(" AND 1 = 0");
                        }
                    };
                    q.push(" RETURNING id, sent_at");
                    if resolve_in_update {
                        // `ANY(ARRAY(…))`: an index probe per applied id,
                        // whatever the planner thinks of the flags' table.
                        q.push("), r AS (UPDATE non_recipients SET resolved_at = ");
                        q.push_bind(now);
                        q.push(
                            ", resolution = 'delivered_late' WHERE resolved_at IS NULL \
                             AND message_id = ANY(ARRAY(SELECT id FROM u)))",
                        );
                        if insert_with_update && groups.len() == 1 {
                            // The batch's receipts too: the round trip of
                            // their own INSERT saved, every batch. Each of
                            // the group's receipts is stored `applied` when
                            // its message is in `u`, the rule applied to the
                            // same rows below.
                            let mut member = vec![false; batch.len()];
                            for (i, _) in members {
                                member[*i] = true;
                            }
                            let all: Vec<usize> = (0..batch.len()).collect();
                            let rows = ReceiptRows { batch, resolved: &resolved, refs: &refs, effects: &effects, erased: &erased };
                            q.push(", i AS (");
                            push_receipts_insert(&mut q, &rows, &all, now, Some(&member));
                            q.push(")");
                            inserted = true;
                        }
                        q.push(" SELECT id, sent_at FROM u");
                    }
                    // Applied ids, with when the send was recorded (none
                    // when the receipt overtook the recording).
                    let applied: IdMap<Option<i64>> =
                        q.build_query_as::<(i64, Option<i64>)>().fetch_all(&mut *tx).await?.into_iter().collect();
                    for (i, id) in members {
                        effects[*i] = Some(match applied.get(id) {
                            Some(sent_at) => {
                                if status.is_final() {
                                    final_lags_ms[*i] = sent_at.map(|t| (now - t).max(0));
                                }
                                ReceiptEffect::Applied
                            }
                            None => ReceiptEffect::Ignored,
                        });
                    }
                    if applied.is_empty() {
                        continue;
                    }
                    let mut applied: Vec<i64> = applied.into_keys().collect();
                    applied.sort_unstable();
                    match reason {
                        Some(reason) => {
                            // flags::FLAG_SQL, for a batch.
                            let mut q = QueryBuilder::new(super::flags::FLAG_HEAD_SQL);
                            q.push_bind(reason.as_str());
                            q.push(" AS reason, ");
                            q.push_bind(now);
                            q.push(" AS at FROM messages m WHERE m.id");
                            super::push_in_ids(&mut q, &applied);
                            q.push(super::flags::FLAG_TAIL_SQL);
                            q.build().execute(&mut *tx).await?;
                        }
                        None if resolve_in_update => {}
                        None => {
                            let mut q = QueryBuilder::new("UPDATE non_recipients SET resolved_at = ");
                            q.push_bind(now);
                            q.push(", resolution = 'delivered_late' WHERE resolved_at IS NULL AND message_id");
                            super::push_in_ids(&mut q, &applied);
                            q.build().execute(&mut *tx).await?;
                        }
                    }
                }
            }
            for (i, id) in stored.iter().enumerate() {
                if let Some(id) = id {
                    sqlx::query("UPDATE receipts SET message_id = $1, effect = $2 WHERE id = $3")
                        .bind(resolved[i])
                        .bind(effects[i].unwrap_or(ReceiptEffect::Ignored).as_str())
                        .bind(*id)
                        .execute(&mut *tx).await?;
                    if resolved[i].is_some_and(|m| erased.contains(&m)) {
                        sqlx::query("UPDATE receipts SET payload = $1 WHERE id = $2")
                            .bind(super::ERASED_TEXT).bind(*id)
                            .execute(&mut *tx).await?;
                    }
                }
            }
            if !inserted {
                let fresh: Vec<usize> = (0..batch.len()).filter(|&i| stored[i].is_none()).collect();
                let rows = ReceiptRows { batch, resolved: &resolved, refs: &refs, effects: &effects, erased: &erased };
                for chunk in fresh.chunks(INSERT_CHUNK) {
                    let mut q = QueryBuilder::new("");
                    push_receipts_insert(&mut q, &rows, chunk, now, None);
                    q.build().execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        });
        Ok(AppliedReceipts {
            effects: effects
                .into_iter()
                .map(|e| e.unwrap_or(ReceiptEffect::Ignored))
                .collect(),
            final_lags_ms,
        })
    }
}

/// The statement that reads which gateways each of `ids` was handed to
/// (its `handed_over` attempts), as `(message_id, gateway)` rows.
///
/// On PostgreSQL one index look-up per id, whatever the planner knows:
/// as `message_id = ANY($1)` over `attempts`, a table without fresh
/// statistics (autovacuum late or off; it grows from nothing during a
/// campaign) was read whole for every batch of receipts, the most
/// expensive statement of a run (BENCHMARKS.md, "Cost per message"). The
/// `OFFSET 0` keeps the per-id subquery from being flattened into a join
/// the planner could hash. SQLite plans `IN (…)` as look-ups by itself.
pub(crate) trait HandOverEvidence: sqlx::Database {
    /// The aggregate joining texts with a separator (`string_agg`,
    /// `group_concat`), for [`push_handed_over_gateways`].
    const JOIN_TEXT: &'static str;

    /// `(message id, gateway)` of every hand-over of the messages `ids`, as
    /// a statement of its own.
    fn push_handed_over(q: &mut QueryBuilder<'_, Self>, ids: &[i64]);

    /// The receipt update's own guard: ` AND` the row (one of `ids`) was
    /// handed to `gateway`. On PostgreSQL one index look-up per id
    /// (`unnest` + `LATERAL … LIMIT 1`): as a correlated `EXISTS` the planner,
    /// estimating `attempts` from its first pages, read the whole table for
    /// every batch of receipts (a hash or a materialised scan), which made
    /// applying receipts quadratic in the campaign's size.
    fn push_handed_over_to<'a>(q: &mut QueryBuilder<'a, Self>, ids: &[i64], gateway: &'a str);
}

impl HandOverEvidence for sqlx::Postgres {
    const JOIN_TEXT: &'static str = "string_agg";

    fn push_handed_over(q: &mut QueryBuilder<'_, Self>, ids: &[i64]) {
        q.push("SELECT DISTINCT t.id, a.gateway FROM unnest(");
        q.push_bind(ids.to_vec());
        q.push(
            "::BIGINT[]) AS t(id) CROSS JOIN LATERAL (SELECT gateway FROM attempts \
             WHERE message_id = t.id AND handed_over AND gateway IS NOT NULL OFFSET 0) a",
        );
    }

    fn push_handed_over_to<'a>(q: &mut QueryBuilder<'a, Self>, ids: &[i64], gateway: &'a str) {
        q.push(" AND id = ANY(ARRAY(SELECT t.id FROM unnest(");
        q.push_bind(ids.to_vec());
        q.push(
            "::BIGINT[]) AS t(id) CROSS JOIN LATERAL (SELECT 1 FROM attempts \
             WHERE message_id = t.id AND handed_over AND gateway = ",
        );
        q.push_bind(gateway);
        q.push(" LIMIT 1) a))");
    }
}

impl HandOverEvidence for sqlx::Sqlite {
    const JOIN_TEXT: &'static str = "group_concat";

    fn push_handed_over(q: &mut QueryBuilder<'_, Self>, ids: &[i64]) {
        q.push("SELECT DISTINCT message_id, gateway FROM attempts WHERE gateway IS NOT NULL AND handed_over = ");
        q.push_bind(true);
        q.push(" AND message_id");
        super::push_in_ids(q, ids);
    }

    fn push_handed_over_to<'a>(q: &mut QueryBuilder<'a, Self>, _ids: &[i64], gateway: &'a str) {
        q.push(" AND EXISTS (SELECT 1 FROM attempts a WHERE a.message_id = messages.id AND a.gateway = ");
        q.push_bind(gateway);
        q.push(" AND a.handed_over = ");
        q.push_bind(true);
        q.push(")");
    }
}

/// Separates the gateways of [`HandOverEvidence::push_handed_over_gateways`]:
/// gateway names are letters, digits, `-` and `_` (`config`).
const HANDED_OVER_SEPARATOR: char = ' ';

/// A column of the receipts' lock read (`messages m`): the gateways the
/// row was handed to, distinct, joined by [`HANDED_OVER_SEPARATOR`], or
/// NULL. A sub-select per row, which both databases run as an index
/// look-up in `attempts_message` whatever they know of `attempts`' size.
fn push_handed_over_gateways<DB: HandOverEvidence>(q: &mut QueryBuilder<'_, DB>) {
    q.push(format!(
        "(SELECT {}(h.g, '{HANDED_OVER_SEPARATOR}') FROM (SELECT DISTINCT a.gateway AS g \
         FROM attempts a WHERE a.message_id = m.id AND a.handed_over AND a.gateway IS NOT NULL) h)",
        DB::JOIN_TEXT
    ));
}

/// A map keyed by message id, within one receipt batch: foldhash's
/// seeded hasher instead of the standard SipHash, which hashing each
/// receipt's id five times made 2 % of a receipt's instructions. A batch
/// holds at most `[http] receipt_max_batch` ids (256 unless set), and the
/// seed is still random per process.
type IdMap<V> = std::collections::HashMap<i64, V, foldhash::fast::RandomState>;

/// The gateways each message of a batch was handed to: per message, a list
/// joined by [`HANDED_OVER_SEPARATOR`] as the statement returns it, kept
/// as read (one string a message, not one a gateway).
#[derive(Default)]
struct HandedOver(IdMap<String>);

impl HandedOver {
    /// Message `id` was handed to the gateways of `list`.
    fn set(&mut self, id: i64, list: String) {
        self.0.insert(id, list);
    }

    /// Message `id` was also handed to `gateway`.
    fn add(&mut self, id: i64, gateway: &str) {
        let list = self.0.entry(id).or_default();
        list.push(HANDED_OVER_SEPARATOR);
        list.push_str(gateway);
    }

    /// The gateways message `id` was handed to.
    fn of(&self, id: i64) -> impl Iterator<Item = &str> {
        self.0
            .get(&id)
            .map_or("", String::as_str)
            .split(HANDED_OVER_SEPARATOR)
            .filter(|g| !g.is_empty())
    }

    /// Message `id` was handed to `gateway`.
    fn to(&self, id: i64, gateway: &str) -> bool {
        self.of(id).any(|g| g == gateway)
    }

    /// Message `id` was handed to a gateway other than `gateway`.
    fn to_another(&self, id: i64, gateway: &str) -> bool {
        self.of(id).any(|g| g != gateway)
    }
}

/// [`HandOverEvidence::push_handed_over`], the database inferred.
fn push_handed_over<DB: HandOverEvidence>(q: &mut QueryBuilder<'_, DB>, ids: &[i64]) {
    DB::push_handed_over(q, ids)
}

/// [`HandOverEvidence::push_handed_over_to`], the database inferred.
fn push_handed_over_to<'a, DB: HandOverEvidence>(
    q: &mut QueryBuilder<'a, DB>,
    ids: &[i64],
    gateway: &'a str,
) {
    DB::push_handed_over_to(q, ids, gateway)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handed_over_reads_the_lists_as_the_statement_returns_them() {
        let mut t = HandedOver::default();
        t.set(1, "sim isat".into());
        t.set(2, String::new());
        t.add(2, "sim");
        t.add(3, "isat");
        assert!(t.to(1, "sim") && t.to(1, "isat") && !t.to(1, "xl"));
        assert!(t.to_another(1, "sim"));
        assert!(t.to(2, "sim") && !t.to_another(2, "sim"));
        assert!(t.to(3, "isat") && !t.to_another(3, "isat"));
        assert!(!t.to(4, "sim") && !t.to_another(4, "sim"));
        assert!(!t.to(2, "") && !t.to_another(5, ""));
    }

    #[test]
    fn gateway_ids_compare_without_case_or_leading_zeros() {
        assert_eq!(normalize_ref("00ABC12"), "abc12");
        assert_eq!(normalize_ref(" abc12 "), "abc12");
        assert_eq!(normalize_ref("000"), "0");
        assert_eq!(normalize_ref(""), "");
        for o in [
            "delivered",
            "undelivered",
            "expired",
            "rejected",
            "invalid_number",
            "accepted",
        ] {
            assert_eq!(outcome_name(outcome_from_name(o)), o);
        }
        assert_eq!(outcome_from_name("zzz"), ReceiptOutcome::Unknown);
    }
}
