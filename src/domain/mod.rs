//! Parse-don't-validate types for the Indonesian domain.
//!
//! Everything past the edge of the program (CSV import, HTTP, CLI) holds these
//! parsed types only. Each parser returns a `thiserror` enum that says exactly
//! what is wrong, so a rejected CSV row or API request can name its reason.
//! Beside them, the pure decisions the store applies inside its
//! transactions ([`window`], [`notice`], [`search`]): the store runs the
//! queries, these modules decide, and none of them reads the database.

pub mod mask;
pub mod msisdn;
pub mod notice;
pub mod nik;
pub mod outcome;
pub mod province;
pub mod search;
pub mod sms;
pub mod window;

pub use mask::{mask_name, mask_nik, mask_phone};
pub use msisdn::{Msisdn, MsisdnError, Operator};
pub use nik::{Nik, NikError};
pub use province::{ProvinceCode, ProvinceError, TimeZone};
pub use sms::{Encoding, SmsText};
pub use window::{fmt_wib, Window};
