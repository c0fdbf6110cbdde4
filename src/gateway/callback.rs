//! What binds a receipt callback to one gateway and one message.
//!
//! Every callback URL we hand a carrier for one message ends in a
//! per-message token, `{message id}.{mac}`, where `mac` is HMAC-SHA256 of
//! (gateway, message id) keyed by HMAC-SHA256(callback secret, "pedulicovid
//! callback mac v1"), truncated to 16 bytes (32 hex digits). The secret itself never leaves us in such a
//! URL: a carrier (or anyone who reads its logs) holds a capability for
//! exactly the messages it was given, on exactly that gateway, and cannot
//! make one for another message or another gateway. Message ids are
//! sequential; the MAC is what makes them unguessable.
//!
//! The gateway-wide token (the secret itself, in the path or in
//! `X-Callback-Token`) is accepted only from gateways that can only call one
//! fixed URL (a JSON aggregator whose template has no `{{callback_url}}`);
//! Kannel, Jasmin and JSON gateways handed per-message URLs accept
//! per-message tokens alone. Fixed-URL receipts are matched by the
//! aggregator's id and apply only to messages recorded as handed to that
//! gateway (see [`crate::status::HandOver`]).
//!
//! Rotation: a [`KeySet`] holds the current secret and, for a grace period,
//! the previous one; tokens and MACs made with either verify, so receipts
//! for messages sent before a rotation still land.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::Secret;
use crate::store::{Store, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the HMAC kept in a per-message token (128 bits).
pub const MAC_BYTES: usize = 16;

/// Shortest callback secret accepted (a configured one; generated secrets
/// are 64 hex digits).
pub const MIN_SECRET_CHARS: usize = 32;

/// Label of the per-message MAC key, derived from the callback secret.
const MAC_KEY_LABEL: &[u8] = b"pedulicovid callback mac v1";

/// The per-message MAC key: HMAC-SHA256(secret, "pedulicovid callback mac
/// v1"). Derived, never the secret itself: a fixed URL (or a log) that
/// shows the gateway-wide token does not give away the key that makes
/// per-message URLs.
fn mac_key(secret: &Secret) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(MAC_KEY_LABEL);
    mac.finalize().into_bytes().into()
}

/// The per-message MAC: hex of the first [`MAC_BYTES`] of
/// HMAC-SHA256([`mac_key`], "pedulicovid-receipt-v1\n{gateway}\n{message_id}").
/// The gateway's name is inside, so a MAC made for one gateway never
/// verifies on another's callback path, even where two share a secret.
pub fn message_mac(secret: &Secret, gateway: &str, message_id: i64) -> String {
    Keyed::new(secret.clone()).message_mac(gateway, message_id)
}

/// A secret with its MAC key derived once: the HMAC state keyed with
/// [`mac_key`] is cloned per message, so signing a URL or checking a
/// receipt (once per message each) computes one HMAC, not three.
#[derive(Clone)]
struct Keyed {
    secret: Secret,
    mac: HmacSha256,
}

impl Keyed {
    fn new(secret: Secret) -> Keyed {
        let mac =
            HmacSha256::new_from_slice(&mac_key(&secret)).expect("HMAC takes a key of any length");
        Keyed { secret, mac }
    }

    /// See [`message_mac`].
    fn message_mac(&self, gateway: &str, message_id: i64) -> String {
        let mut out = String::with_capacity(MAC_BYTES * 2);
        self.push_message_mac(&mut out, gateway, message_id);
        out
    }

    /// [`Self::message_mac`], appended to `out`.
    fn push_message_mac(&self, out: &mut String, gateway: &str, message_id: i64) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.reserve(MAC_BYTES * 2);
        for b in self.message_mac_bytes(gateway, message_id) {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }

    /// The [`MAC_BYTES`] that [`Self::message_mac`] writes in hex.
    fn message_mac_bytes(&self, gateway: &str, message_id: i64) -> [u8; MAC_BYTES] {
        let mut mac = self.mac.clone();
        mac.update(b"pedulicovid-receipt-v1\n");
        mac.update(gateway.as_bytes());
        mac.update(b"\n");
        mac.update(itoa::Buffer::new().format(message_id).as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0; MAC_BYTES];
        out.copy_from_slice(&full[..MAC_BYTES]);
        out
    }
}

/// The path token for one message: `{message_id}.{mac}`.
pub fn message_token(secret: &Secret, gateway: &str, message_id: i64) -> String {
    let mut out = String::new();
    push_token(&mut out, &Keyed::new(secret.clone()), gateway, message_id);
    out
}

/// `{message_id}.{mac}`, appended to `out`.
fn push_token(out: &mut String, key: &Keyed, gateway: &str, message_id: i64) {
    out.push_str(itoa::Buffer::new().format(message_id));
    out.push('.');
    key.push_message_mac(out, gateway, message_id);
}

/// The secrets a gateway's callbacks verify against.
#[derive(Clone, Default)]
pub struct KeySet {
    /// Signs new URLs; verifies.
    pub current: Secret,
    /// The secret before the last rotation: verifies until `previous_until_ms`.
    pub previous: Option<Secret>,
    /// Unix milliseconds; the previous secret is refused from then on.
    pub previous_until_ms: i64,
}

impl KeySet {
    /// Just one secret (no rotation in progress).
    pub fn single(current: Secret) -> KeySet {
        KeySet {
            current,
            previous: None,
            previous_until_ms: 0,
        }
    }
}

/// A [`KeySet`] with each secret's MAC key derived (see [`Keyed`]).
struct Active {
    current: Keyed,
    previous: Option<Keyed>,
    previous_until_ms: i64,
}

impl Active {
    fn of(set: KeySet) -> Active {
        Active {
            current: Keyed::new(set.current),
            previous: set.previous.filter(|p| !p.is_empty()).map(Keyed::new),
            previous_until_ms: set.previous_until_ms,
        }
    }

    /// The secrets valid at `now_ms`, current first.
    fn valid(&self, now_ms: i64) -> impl Iterator<Item = &Keyed> {
        let previous = self
            .previous
            .as_ref()
            .filter(|_| now_ms < self.previous_until_ms);
        std::iter::once(&self.current).chain(previous)
    }
}

/// What a callback's path token (or `X-Callback-Token`) proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCheck {
    /// The gateway-wide token: the caller is the gateway (a fixed URL).
    Gateway,
    /// A per-message token whose MAC verified for this message id.
    Message(i64),
    /// Neither.
    Refused,
}

/// One gateway's callback secrets, shared by its sender (signs URLs) and its
/// callback endpoint (verifies them). Replaced in place on rotation.
pub struct CallbackKeys {
    gateway: String,
    set: RwLock<Active>,
    /// Set for secrets generated and kept in the database: a refused token
    /// may be signed with a secret rotated by another process, so the
    /// endpoint reloads (at most once a second) before refusing.
    generated: bool,
    /// For a generated secret: how long the previous one stays valid after
    /// a rotation, in milliseconds.
    grace_ms: i64,
    last_reload: Mutex<Option<Instant>>,
    /// Whether the gateway-wide token is accepted at all: only for a
    /// gateway that cannot be handed a per-message URL (a JSON aggregator
    /// whose template has no `{{callback_url}}`). Off by default.
    gateway_token: AtomicBool,
}

impl CallbackKeys {
    /// Secrets from the settings (fixed for the life of the process).
    pub fn configured(gateway: impl Into<String>, set: KeySet) -> Arc<CallbackKeys> {
        Arc::new(CallbackKeys {
            gateway: gateway.into(),
            set: RwLock::new(Active::of(set)),
            generated: false,
            grace_ms: 0,
            last_reload: Mutex::new(None),
            gateway_token: AtomicBool::new(false),
        })
    }

    /// A secret generated and kept in the database (created on first use),
    /// with the previous one valid for `grace_ms` after a rotation.
    pub async fn generated(
        gateway: impl Into<String>,
        grace_ms: i64,
        store: &Store,
    ) -> Result<Arc<CallbackKeys>, StoreError> {
        let keys = Arc::new(CallbackKeys {
            gateway: gateway.into(),
            set: RwLock::new(Active::of(KeySet::default())),
            generated: true,
            grace_ms,
            last_reload: Mutex::new(None),
            gateway_token: AtomicBool::new(false),
        });
        keys.reload(store).await?;
        Ok(keys)
    }

    /// Reads a generated secret again (another process may have rotated
    /// it). Nothing to do for configured secrets.
    pub async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        if !self.generated {
            return Ok(());
        }
        let set = store.gateway_secret_set(&self.gateway).await?;
        self.replace(KeySet {
            current: set.current,
            previous: set.previous,
            previous_until_ms: set
                .rotated_at
                .map_or(0, |r| r.saturating_add(self.grace_ms)),
        });
        Ok(())
    }

    pub fn gateway(&self) -> &str {
        &self.gateway
    }

    /// Whether the secrets live in the database (and may be reloaded).
    pub fn is_generated(&self) -> bool {
        self.generated
    }

    /// Accepts (or not) the gateway-wide token: for gateways that call one
    /// fixed URL only (see [`CallbackKeys::check`]).
    pub fn accept_gateway_token(&self, yes: bool) {
        self.gateway_token.store(yes, Ordering::Relaxed);
    }

    /// Whether the gateway-wide token is accepted.
    pub fn accepts_gateway_token(&self) -> bool {
        self.gateway_token.load(Ordering::Relaxed)
    }

    /// Replaces the secrets (after a rotation).
    pub fn replace(&self, set: KeySet) {
        // A poisoned lock only means a panic elsewhere mid-replace; the
        // value is a plain struct, still whole.
        let active = Active::of(set);
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = active;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Active> {
        self.set.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The per-message path token, made with the current secret.
    pub fn message_token(&self, message_id: i64) -> String {
        let mut out = String::new();
        self.push_message_token(&mut out, message_id);
        out
    }

    /// [`Self::message_token`], appended to `out`.
    fn push_message_token(&self, out: &mut String, message_id: i64) {
        push_token(out, &self.read().current, &self.gateway, message_id);
    }

    /// True when a reload from the database is due: a token was refused and
    /// the last reload is more than a second old.
    pub fn reload_due(&self) -> bool {
        if !self.generated {
            return false;
        }
        let mut last = self.last_reload.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(t) if t.elapsed() < Duration::from_secs(1) => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }

    /// Checks a presented token at `now_ms`: `{id}.{mac}` with a MAC that
    /// verifies (constant-time) under a valid secret, or, only where
    /// [`CallbackKeys::accept_gateway_token`] allowed it, the gateway-wide
    /// secret (constant-time). An empty token is refused before any
    /// comparison.
    pub fn check(&self, token: &str, now_ms: i64) -> TokenCheck {
        if token.is_empty() {
            return TokenCheck::Refused;
        }
        let set = self.read();
        if self.accepts_gateway_token() && set.valid(now_ms).any(|k| k.secret.matches(token)) {
            return TokenCheck::Gateway;
        }
        let Some((id, mac)) = token.split_once('.') else {
            return TokenCheck::Refused;
        };
        let Ok(id) = id.parse::<i64>() else {
            return TokenCheck::Refused;
        };
        // Hex of either case, decoded: the comparison is of the MAC's
        // bytes, with nothing allocated for a callback.
        let Some(presented) = hex_mac(mac) else {
            return TokenCheck::Refused;
        };
        let ok = set.valid(now_ms).any(|k| {
            let expected = k.message_mac_bytes(&self.gateway, id);
            bool::from(expected.ct_eq(&presented))
        });
        if ok {
            TokenCheck::Message(id)
        } else {
            TokenCheck::Refused
        }
    }
}

/// The [`MAC_BYTES`] written as `2 × MAC_BYTES` hex digits of either case;
/// `None` for any other length or character.
fn hex_mac(hex: &str) -> Option<[u8; MAC_BYTES]> {
    fn nibble(c: u8) -> Option<u8> {
        char::from(c).to_digit(16).map(|d| d as u8)
    }
    let hex = hex.as_bytes();
    if hex.len() != MAC_BYTES * 2 {
        return None;
    }
    let mut out = [0; MAC_BYTES];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

/// Query parameter carrying our `messages.id` in a callback URL (Jasmin's
/// `dlr-url`, a JSON aggregator's `{{callback_url}}`), so that a receipt can
/// be matched even from a carrier that echoes no reference. Named apart from
/// the carriers' own `id` fields.
pub const OUR_ID_PARAM: &str = "pcid";

/// The callback URL a dialect hands its gateway for one message.
#[derive(Clone)]
pub enum CallbackUrl {
    /// The same URL for every message (unit tests; nothing verifies it).
    Fixed(String),
    /// `{base}/{message id}.{mac}`: `base` is `{public_url}/callbacks/{gateway}`.
    Signed {
        base: String,
        keys: Arc<CallbackKeys>,
    },
}

impl CallbackUrl {
    /// The URL for one message, before the dialect adds its query.
    pub fn for_message(&self, message_id: i64) -> String {
        let mut url = String::new();
        self.push_for_message(&mut url, message_id);
        url
    }

    /// [`Self::for_message`], appended to `out`.
    fn push_for_message(&self, out: &mut String, message_id: i64) {
        match self {
            CallbackUrl::Fixed(u) => out.push_str(u),
            CallbackUrl::Signed { base, keys } => {
                out.push_str(base);
                out.push('/');
                keys.push_message_token(out, message_id);
            }
        }
    }

    /// [`Self::for_message`] followed by the dialect's `query`: `?query`,
    /// or `&query` when the URL already has one.
    pub fn for_message_with_query(&self, message_id: i64, query: &str) -> String {
        self.for_message_with(message_id, |url| url.push_str(query))
    }

    /// [`Self::for_message_with_query`], the query appended by `push_query`
    /// (made once a message: written in place, not formatted apart).
    pub fn for_message_with(
        &self,
        message_id: i64,
        push_query: impl FnOnce(&mut String),
    ) -> String {
        let mut url = String::with_capacity(192);
        self.push_for_message(&mut url, message_id);
        url.push(if url.contains('?') { '&' } else { '?' });
        push_query(&mut url);
        url
    }

    /// [`Self::for_message`] with our id as [`OUR_ID_PARAM`]:
    /// `{base}/{id}.{mac}?pcid={id}`.
    pub fn for_message_with_our_id(&self, message_id: i64) -> String {
        self.for_message_with(message_id, |url| {
            url.push_str(OUR_ID_PARAM);
            url.push('=');
            url.push_str(itoa::Buffer::new().format(message_id));
        })
    }
}

impl From<String> for CallbackUrl {
    fn from(s: String) -> Self {
        CallbackUrl::Fixed(s)
    }
}

impl From<&str> for CallbackUrl {
    fn from(s: &str) -> Self {
        CallbackUrl::Fixed(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(now_until: i64) -> Arc<CallbackKeys> {
        CallbackKeys::configured(
            "tsel",
            KeySet {
                current: Secret::new("n".repeat(40)),
                previous: Some(Secret::new("o".repeat(40))),
                previous_until_ms: now_until,
            },
        )
    }

    #[test]
    fn per_message_tokens_verify_for_their_message_and_gateway_only() {
        let k = keys(0);
        let t = k.message_token(41);
        assert!(t.starts_with("41."), "{t}");
        assert_eq!(t.len(), 3 + 32);
        assert_eq!(k.check(&t, 1), TokenCheck::Message(41));
        assert_eq!(k.check(&t.to_uppercase(), 1), TokenCheck::Message(41));
        // Another message id with the same MAC.
        let other = t.replacen("41.", "42.", 1);
        assert_eq!(k.check(&other, 1), TokenCheck::Refused);
        // The same secret on another gateway makes another MAC.
        let elsewhere = message_token(&Secret::new("n".repeat(40)), "isat", 41);
        assert_ne!(elsewhere, t);
        assert_eq!(k.check(&elsewhere, 1), TokenCheck::Refused);
        // One flipped digit, a short MAC, garbage.
        let mut flipped = t.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(
            k.check(&String::from_utf8(flipped).unwrap(), 1),
            TokenCheck::Refused
        );
        assert_eq!(k.check(&t[..t.len() - 1], 1), TokenCheck::Refused);
        assert_eq!(k.check(&format!("{t}0"), 1), TokenCheck::Refused);
        // The right length, not hex: a `g`, a sign, a multi-byte character
        // standing where two hex digits were.
        for bad in ["g", "+", "é"] {
            let swapped = format!("{}{bad}", &t[..t.len() - bad.len()]);
            assert_eq!(swapped.len(), t.len());
            assert_eq!(k.check(&swapped, 1), TokenCheck::Refused, "{swapped}");
        }
        assert_eq!(k.check("41", 1), TokenCheck::Refused);
        assert_eq!(k.check("", 1), TokenCheck::Refused);
        // The gateway-wide token only where a fixed URL was allowed.
        assert_eq!(k.check(&"n".repeat(40), 1), TokenCheck::Refused);
        k.accept_gateway_token(true);
        assert_eq!(k.check(&"n".repeat(40), 1), TokenCheck::Gateway);
        assert_eq!(k.check("", 1), TokenCheck::Refused);
        assert_eq!(k.check(&t, 1), TokenCheck::Message(41));
    }

    #[test]
    fn hex_mac_reads_back_what_push_message_mac_writes() {
        let k = Keyed::new(Secret::new("n".repeat(40)));
        for id in [0, 1, 41, i64::MAX, -7] {
            let hex = k.message_mac("sim", id);
            assert_eq!(hex_mac(&hex), Some(k.message_mac_bytes("sim", id)));
            assert_eq!(hex_mac(&hex.to_uppercase()), hex_mac(&hex));
        }
        assert_eq!(hex_mac(""), None);
        assert_eq!(hex_mac(&"0".repeat(MAC_BYTES * 2 + 2)), None);
        assert_eq!(hex_mac(&"f".repeat(MAC_BYTES * 2)), Some([0xff; MAC_BYTES]));
    }

    #[test]
    fn the_mac_key_is_derived_not_the_secret() {
        let secret = Secret::new("n".repeat(40));
        // A MAC keyed by the raw secret (what a leaked fixed URL gives
        // away) is not the one we make.
        let mut raw = HmacSha256::new_from_slice(secret.expose().as_bytes()).unwrap();
        raw.update(b"pedulicovid-receipt-v1\ntsel\n41");
        let raw: String = raw.finalize().into_bytes()[..MAC_BYTES]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(raw, message_mac(&secret, "tsel", 41));
        let k = keys(0);
        k.accept_gateway_token(true);
        assert_eq!(k.check(&format!("41.{raw}"), 1), TokenCheck::Refused);
    }

    #[test]
    fn the_previous_secret_verifies_until_its_deadline() {
        let old = Secret::new("o".repeat(40));
        let by_old = message_token(&old, "tsel", 7);
        let k = keys(1_000);
        k.accept_gateway_token(true);
        assert_eq!(k.check(&by_old, 999), TokenCheck::Message(7));
        assert_eq!(k.check(&"o".repeat(40), 999), TokenCheck::Gateway);
        assert_eq!(k.check(&by_old, 1_000), TokenCheck::Refused);
        assert_eq!(k.check(&"o".repeat(40), 1_000), TokenCheck::Refused);
        // New URLs are signed with the current secret.
        assert_eq!(
            k.message_token(7),
            message_token(&Secret::new("n".repeat(40)), "tsel", 7)
        );
    }
}
