//! Fuzzing on stable Rust. `cargo fuzz` needs a nightly toolchain, which this
//! project's machines cannot fetch, so every parser that reads untrusted
//! input has a target here instead: each run replays the corpus in
//! `fuzz/corpus/<target>/` and then feeds `PEDULICOVID_FUZZ_CASES` (default
//! 3,000) generated inputs: random bytes, and mutations of corpus entries
//! (bit flips, truncation, splices, duplicated fields). A target passes when
//! nothing panics and every answer is an `Ok` or a typed error. Failing cases
//! are minimised and kept by proptest under `proptest-regressions/`; add
//! interesting ones to the corpus.
//!
//! Longer runs: `PEDULICOVID_FUZZ_CASES=200000 cargo test --release --test it fuzz::`.

use std::path::PathBuf;

use pedulicovid::domain::{Msisdn, Nik, SmsText};
use pedulicovid::gateway::json::{JsonReceiptMapping, JsonReceipts};
use pedulicovid::gateway::ReceiptParser;
use pedulicovid::gateway::{jasmin, kannel};
use pedulicovid::render::{RenderContext, Renderer};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!out.is_empty(), "empty corpus for {target}");
    out.sort();
    out
}

fn cases() -> u32 {
    std::env::var("PEDULICOVID_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

/// Random bytes, or a corpus entry mutated.
fn inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let seeds2 = seeds.clone();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (
            0..seeds.len(),
            prop::collection::vec((any::<usize>(), any::<u8>()), 0..8)
        )
            .prop_map(move |(i, flips)| {
                let mut s = seeds[i].clone();
                for (at, b) in flips {
                    if !s.is_empty() {
                        let k = at % s.len();
                        s[k] ^= b;
                    }
                }
                s
            }),
        (
            0..seeds2.len(),
            0..seeds2.len(),
            any::<usize>(),
            any::<usize>()
        )
            .prop_map(move |(a, b, x, y)| {
                let (a, b) = (&seeds2[a], &seeds2[b]);
                let mut s = a[..x % (a.len() + 1)].to_vec();
                s.extend_from_slice(&b[y % (b.len() + 1)..]);
                s.extend_from_slice(&b[..y % (b.len() + 1)]);
                s
            }),
    ]
}

fn run(target: &str, f: impl Fn(&[u8])) {
    let seeds = corpus(target);
    for s in &seeds {
        f(s);
    }
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&inputs(seeds), |input| {
            f(&input);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{target}: {e}"));
}

fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

#[test]
fn kannel_receipt() {
    run("kannel_receipt", |b| {
        let _ = kannel::parse_receipt(&pairs(b));
        let _ = kannel::KannelReceipts.parse(&[], b);
    });
}

#[test]
fn jasmin_receipt() {
    run("jasmin_receipt", |b| {
        let _ = jasmin::parse_receipt(&pairs(b));
        let borrowed: Vec<_> = url::form_urlencoded::parse(b).collect();
        let _ = jasmin::JasminReceipts.parse(&borrowed, b);
    });
}

#[test]
fn json_receipt() {
    let parser = JsonReceipts::new(JsonReceiptMapping::default()).unwrap();
    run("json_receipt", |b| {
        let _ = parser.parse(&[], b);
    });
}

#[test]
fn msisdn() {
    run("msisdn", |b| {
        let s = String::from_utf8_lossy(b);
        if let Ok(m) = Msisdn::parse(&s) {
            // A parsed number is stable and never printed in full.
            assert_eq!(Msisdn::parse(m.as_e164()).unwrap(), m);
            assert!(!m.masked().contains(m.digits()));
        }
    });
}

#[test]
fn nik() {
    run("nik", |b| {
        let s = String::from_utf8_lossy(b);
        if let Ok(n) = Nik::parse(&s) {
            assert_eq!(n.as_str().len(), 16);
            assert!(!n.masked().contains(n.as_str()));
        }
    });
}

#[test]
fn sms_text() {
    run("sms_text", |b| {
        let t = SmsText::new(&String::from_utf8_lossy(b));
        assert!(t.segments() >= 1);
        assert_eq!(t.segments() == 1, t.units() <= t.encoding().single_limit());
    });
}

#[test]
fn template_name() {
    let r = Renderer::builtin();
    run("template_name", |b| {
        let name = String::from_utf8_lossy(b).into_owned();
        let ctx = RenderContext {
            full_name: name.clone(),
            ..RenderContext::sample()
        };
        let text = r
            .render("undangan_registrasi", &ctx)
            .expect("any name renders");
        assert!(
            !text.as_str().chars().any(|c| c.is_control() && c != '\n'),
            "no control characters sent"
        );
    });
}

#[test]
fn csv_import() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(async {
        let s = pedulicovid::store::Store::connect("sqlite::memory:")
            .await
            .unwrap();
        s.migrate().await.unwrap();
        s
    });
    let seeds = corpus("csv_import");
    let mut runner = TestRunner::new(Config {
        // Each case is a real import into SQLite: fewer, bigger cases.
        cases: (cases() / 10).max(100),
        failure_persistence: None,
        ..Config::default()
    });
    for s in &seeds {
        rt.block_on(pedulicovid::registry::import_csv(
            &store,
            s.as_slice(),
            |_| {},
        ))
        .ok();
    }
    runner
        .run(&inputs(seeds), |input| {
            match rt.block_on(pedulicovid::registry::import_csv(
                &store,
                input.as_slice(),
                |_| {},
            )) {
                Ok(r) => assert_eq!(
                    r.rows,
                    r.accepted + r.rejected_rows,
                    "every row accounted for"
                ),
                Err(e) => {
                    // Only whole-file problems may stop an import.
                    let msg = e.to_string();
                    assert!(
                        msg.contains("header") || msg.contains("empty") || msg.contains("reading"),
                        "{msg}"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}
