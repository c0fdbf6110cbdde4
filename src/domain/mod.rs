//! Parse-don't-validate types for the Indonesian domain.
//!
//! Everything past the edge of the program (CSV import, HTTP, CLI) holds these
//! parsed types only. Each parser returns a `thiserror` enum that says exactly
//! what is wrong, so a rejected CSV row or API request can name its reason.

pub mod mask;
pub mod msisdn;
pub mod nik;
pub mod province;
pub mod sms;

pub use mask::{mask_name, mask_nik, mask_phone};
pub use msisdn::{Msisdn, MsisdnError, Operator};
pub use nik::{Nik, NikError};
pub use province::{ProvinceCode, ProvinceError, TimeZone};
pub use sms::{Encoding, SmsText};
