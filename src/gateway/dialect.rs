//! The dialects we speak, each gateway's settings for exactly one of them,
//! and [`build`]: the one function that makes a gateway from its settings.
//!
//! A gateway's settings carry its own dialect's table and no other
//! ([`GatewayDialect`]): `dialect = "kannel"` reads `[gateways.kannel]`, and
//! a `[gateways.jasmin]` under it is refused when the settings load
//! ([`GatewayDialect::from_tables`]), so nothing can quietly send with
//! settings nobody reads.
//!
//! # Adding a dialect
//!
//! Its file in `src/gateway/` (its settings, a [`super::http::Wire`] and a
//! [`ReceiptParser`]), then a variant in [`Dialect`] and one in
//! [`DialectSettings`], and their arms in this file (every `match` here is
//! exhaustive, so the compiler lists them), and its table in config's raw
//! gateway shape (`RawGatewaySettings`, the documented settings file).
//! Nothing in the engine changes. For the built-in simulator to speak it
//! too, the simulator learns it and `app.rs`'s simulator hook points it at
//! the simulator.

use std::sync::Arc;

use anyhow::Context;

use super::callback::CallbackUrl;
use super::http::{gateway_client, GatewayTls};
use super::jasmin::{JasminConfig, JasminGateway, JasminReceipts};
use super::json::{JsonConfig, JsonGateway, JsonReceipts};
use super::kannel::{KannelConfig, KannelGateway, KannelReceipts};
use super::{Gateway, ReceiptParser};

/// The API a gateway speaks, as named in settings (`dialect = "kannel"`).
/// One file per dialect under `src/gateway/`; `simulator` asks for the
/// built-in simulator by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Kannel `sendsms` (`kannel.*` settings).
    #[default]
    Kannel,
    /// Jasmin's HTTP API (`jasmin.*` settings).
    Jasmin,
    /// A JSON aggregator described by settings (`json.*`).
    Json,
    /// The built-in carrier simulator, started in-process; it speaks
    /// `simulator.dialect` and this gateway is wired to its address and
    /// credentials. Never chosen unless written here.
    Simulator,
}

impl Dialect {
    /// Every dialect, as listed in errors.
    pub const ALL: [Dialect; 4] = [
        Dialect::Kannel,
        Dialect::Jasmin,
        Dialect::Json,
        Dialect::Simulator,
    ];

    /// The name used in settings, which is also the name of its table
    /// (`[gateways.kannel]`).
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Kannel => "kannel",
            Dialect::Jasmin => "jasmin",
            Dialect::Json => "json",
            Dialect::Simulator => "simulator",
        }
    }

    /// The setting holding the send URL of a real gateway of this dialect.
    pub fn url_field(self) -> Option<&'static str> {
        match self {
            Dialect::Kannel => Some("kannel.sendsms_url"),
            Dialect::Jasmin => Some("jasmin.send_url"),
            Dialect::Json => Some("json.url"),
            Dialect::Simulator => None,
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One carrier dialect with its settings: one variant per dialect file.
// Settings are read once at start and held once per gateway: the size of
// the JSON variant costs nothing worth a `Box` in every pattern.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum DialectSettings {
    /// `[gateways.kannel]`.
    Kannel(KannelConfig),
    /// `[gateways.jasmin]`.
    Jasmin(JasminConfig),
    /// `[gateways.json]`.
    Json(JsonConfig),
}

impl DialectSettings {
    /// The dialect's default settings (each points at the built-in
    /// simulator's default address); `None` for [`Dialect::Simulator`],
    /// which has no table of its own.
    pub fn default_for(dialect: Dialect) -> Option<DialectSettings> {
        match dialect {
            Dialect::Kannel => Some(DialectSettings::Kannel(KannelConfig::default())),
            Dialect::Jasmin => Some(DialectSettings::Jasmin(JasminConfig::default())),
            Dialect::Json => Some(DialectSettings::Json(JsonConfig::default())),
            Dialect::Simulator => None,
        }
    }

    /// Which dialect these settings are for.
    pub fn dialect(&self) -> Dialect {
        match self {
            DialectSettings::Kannel(_) => Dialect::Kannel,
            DialectSettings::Jasmin(_) => Dialect::Jasmin,
            DialectSettings::Json(_) => Dialect::Json,
        }
    }

    /// The send URL (`kannel.sendsms_url`, `jasmin.send_url`, `json.url`).
    /// It may hold credentials: log [`crate::config::url_host`] of it, never
    /// the URL.
    pub fn send_url(&self) -> &str {
        match self {
            DialectSettings::Kannel(c) => &c.sendsms_url,
            DialectSettings::Jasmin(c) => &c.send_url,
            DialectSettings::Json(c) => &c.url,
        }
    }
}

impl From<KannelConfig> for DialectSettings {
    fn from(c: KannelConfig) -> Self {
        DialectSettings::Kannel(c)
    }
}

impl From<JasminConfig> for DialectSettings {
    fn from(c: JasminConfig) -> Self {
        DialectSettings::Jasmin(c)
    }
}

impl From<JsonConfig> for DialectSettings {
    fn from(c: JsonConfig) -> Self {
        DialectSettings::Json(c)
    }
}

/// What one gateway speaks: a carrier dialect with its settings, or the
/// built-in simulator. `GatewaySettings::dialect`.
#[derive(Debug, Clone)]
pub enum GatewayDialect {
    /// A carrier gateway: `dialect = "kannel"` (the default) with
    /// `[gateways.kannel]`, and so on.
    Carrier(DialectSettings),
    /// `dialect = "simulator"`: the built-in simulator, speaking
    /// `simulator.dialect` at its own address with its own credentials
    /// (`app.rs`, the simulator hook). The gateway may carry the table of
    /// the dialect the simulator speaks, for what is not address or
    /// credentials (a timeout, a JSON template); `None` takes that
    /// dialect's defaults.
    Simulator(Option<DialectSettings>),
}

impl Default for GatewayDialect {
    /// Kannel with its default settings (whose URL a real gateway must
    /// still write: `Settings::load`).
    fn default() -> Self {
        GatewayDialect::Carrier(DialectSettings::Kannel(KannelConfig::default()))
    }
}

impl GatewayDialect {
    /// The documented settings shape made one variant: `dialect` and the
    /// dialect tables given beside it (`[gateways.kannel]`, …). A table for
    /// another dialect than the gateway's is refused, naming the gateway,
    /// rather than ignored; a `simulator` gateway may carry one table (see
    /// [`GatewayDialect::Simulator`]). A carrier gateway without its table
    /// gets its dialect's defaults.
    pub fn from_tables(
        gateway: &str,
        dialect: Dialect,
        tables: impl IntoIterator<Item = DialectSettings>,
    ) -> Result<GatewayDialect, String> {
        let mut tables: Vec<DialectSettings> = tables.into_iter().collect();
        if dialect == Dialect::Simulator {
            if tables.len() > 1 {
                let names: Vec<String> = tables
                    .iter()
                    .map(|t| format!("[gateways.{}]", t.dialect()))
                    .collect();
                return Err(format!(
                    "gateway {gateway:?} (dialect simulator) has {}: it takes at most the \
                     table of the dialect the simulator speaks (simulator.dialect)",
                    names.join(" and ")
                ));
            }
            return Ok(GatewayDialect::Simulator(tables.pop()));
        }
        if let Some(other) = tables.iter().find(|t| t.dialect() != dialect) {
            let other = other.dialect();
            return Err(format!(
                "gateway {gateway:?} has a [gateways.{other}] table, but its dialect is \
                 {dialect:?}: a gateway reads only its own dialect's table (remove \
                 [gateways.{other}], or set dialect = \"{other}\")",
                dialect = dialect.as_str(),
            ));
        }
        match tables
            .pop()
            .or_else(|| DialectSettings::default_for(dialect))
        {
            Some(settings) => Ok(GatewayDialect::Carrier(settings)),
            // `default_for` is `None` only for the simulator, handled above.
            None => Err(format!(
                "gateway {gateway:?}: dialect {dialect} has no settings"
            )),
        }
    }

    /// Which dialect the gateway asked for (`simulator` for the simulator).
    pub fn dialect(&self) -> Dialect {
        match self {
            GatewayDialect::Carrier(s) => s.dialect(),
            GatewayDialect::Simulator(_) => Dialect::Simulator,
        }
    }

    /// The setting holding a carrier gateway's send URL; `None` for the
    /// simulator, whose address is known only once it runs.
    pub fn url_field(&self) -> Option<&'static str> {
        self.dialect().url_field()
    }

    /// A carrier gateway's send URL; empty for the simulator.
    pub fn send_url(&self) -> &str {
        match self {
            GatewayDialect::Carrier(s) => s.send_url(),
            GatewayDialect::Simulator(_) => "",
        }
    }
}

impl From<DialectSettings> for GatewayDialect {
    fn from(s: DialectSettings) -> Self {
        GatewayDialect::Carrier(s)
    }
}

impl From<KannelConfig> for GatewayDialect {
    fn from(c: KannelConfig) -> Self {
        GatewayDialect::Carrier(c.into())
    }
}

impl From<JasminConfig> for GatewayDialect {
    fn from(c: JasminConfig) -> Self {
        GatewayDialect::Carrier(c.into())
    }
}

impl From<JsonConfig> for GatewayDialect {
    fn from(c: JsonConfig) -> Self {
        GatewayDialect::Carrier(c.into())
    }
}

/// Compares which dialect a gateway speaks, its settings aside:
/// `g.dialect == Dialect::Simulator`.
impl PartialEq<Dialect> for GatewayDialect {
    fn eq(&self, other: &Dialect) -> bool {
        self.dialect() == *other
    }
}

/// The dialect's name, as in settings.
impl std::fmt::Display for GatewayDialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.dialect().as_str())
    }
}

/// One gateway, built: what the engine sends through and what reads its
/// receipt callbacks.
pub struct Built {
    /// What the router sends through.
    pub gateway: Arc<dyn Gateway>,
    /// What reads this gateway's receipt callbacks.
    pub receipts: Arc<dyn ReceiptParser>,
    /// Whether the gateway can only call one fixed receipt URL (a JSON
    /// aggregator without `{{callback_url}}`), so that its callbacks carry
    /// the gateway-wide token ([`super::callback`]).
    pub fixed_callback_url: bool,
}

/// Builds one gateway named `name` from its dialect's settings: its HTTP
/// client (the dialect's timeout, the gateway's `tls`, `max_idle_per_host`
/// pooled connections), its sender and its receipt parser. The one place a
/// dialect is chosen. `callback_url` is our receipt endpoint for it. Errors
/// name the gateway and the setting.
pub fn build(
    name: &str,
    settings: &DialectSettings,
    callback_url: CallbackUrl,
    tls: &GatewayTls,
    max_idle_per_host: usize,
) -> anyhow::Result<Built> {
    let client = |timeout| gateway_client(name, tls, timeout, max_idle_per_host);
    Ok(match settings {
        DialectSettings::Kannel(c) => Built {
            gateway: Arc::new(KannelGateway::new(
                name,
                c.clone(),
                callback_url,
                client(c.timeout())?,
            )),
            receipts: Arc::new(KannelReceipts),
            fixed_callback_url: false,
        },
        DialectSettings::Jasmin(c) => Built {
            gateway: Arc::new(JasminGateway::new(
                name,
                c.clone(),
                callback_url,
                client(c.timeout())?,
            )),
            receipts: Arc::new(JasminReceipts),
            fixed_callback_url: false,
        },
        DialectSettings::Json(c) => Built {
            gateway: Arc::new(
                JsonGateway::new(name, c.clone(), callback_url, client(c.timeout())?)
                    .with_context(|| format!("gateway {name}: json settings"))?,
            ),
            receipts: Arc::new(
                JsonReceipts::new(c.receipt.clone())
                    .with_context(|| format!("gateway {name}: json receipt mapping"))?,
            ),
            fixed_callback_url: c.uses_fixed_url(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(dialects: &[Dialect]) -> Vec<DialectSettings> {
        dialects
            .iter()
            .filter_map(|d| DialectSettings::default_for(*d))
            .collect()
    }

    #[test]
    fn a_gateway_reads_only_its_own_dialect_table() {
        for d in [Dialect::Kannel, Dialect::Jasmin, Dialect::Json] {
            let own = GatewayDialect::from_tables("g", d, tables(&[d])).expect("own table");
            assert_eq!(own, d);
            let bare = GatewayDialect::from_tables("g", d, vec![]).expect("no table");
            assert_eq!(bare, d);
            for other in [Dialect::Kannel, Dialect::Jasmin, Dialect::Json] {
                if other == d {
                    continue;
                }
                let e = GatewayDialect::from_tables("tsel", d, tables(&[other]))
                    .expect_err("another dialect's table");
                assert!(
                    e.contains("\"tsel\"") && e.contains(&format!("[gateways.{other}]")),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn a_simulator_gateway_takes_at_most_one_table() {
        let none = GatewayDialect::from_tables("sim", Dialect::Simulator, vec![]).unwrap();
        assert!(matches!(none, GatewayDialect::Simulator(None)));
        let one = GatewayDialect::from_tables("sim", Dialect::Simulator, tables(&[Dialect::Json]))
            .unwrap();
        assert!(matches!(
            one,
            GatewayDialect::Simulator(Some(DialectSettings::Json(_)))
        ));
        let e = GatewayDialect::from_tables(
            "sim",
            Dialect::Simulator,
            tables(&[Dialect::Kannel, Dialect::Json]),
        )
        .unwrap_err();
        assert!(e.contains("\"sim\""), "{e}");
    }
}
