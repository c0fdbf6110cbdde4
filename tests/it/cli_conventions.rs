//! One command-line convention (README, "Command-line conventions"):
//! `--json` anywhere and on every command that prints a result, documented
//! exit codes, value lists for fixed choices, one environment scheme, and
//! `template`'s text apart from its statistics.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{nik_of, row, HEADER};

/// The binary in `dir`, on the SQLite file `db` there, with nothing from
/// the caller's environment that could change the settings.
fn pedulicovid(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .args(args)
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("DATABASE_URL")
        .env(
            "PEDULICOVID__DATABASE_URL",
            format!("sqlite://{}", dir.join("db.sqlite").display()),
        )
        .env("USER", "cli-test")
        .output()
        .expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("UTF-8")
}

/// The one line of JSON a `--json` command printed.
fn json_of(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "{:?}: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let out = stdout(o);
    assert_eq!(out.trim_end().lines().count(), 1, "one line: {out}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn import_exits_3_when_rows_were_rejected_and_keeps_the_good_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.csv");
    std::fs::write(&good, format!("{HEADER}{}", row(1, "31", "00000011"))).unwrap();
    let o = pedulicovid(dir.path(), &["import", good.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");

    let mixed = dir.path().join("mixed.csv");
    let bad = row(3, "31", "00000031").replacen("3101", "31x1", 1);
    std::fs::write(&mixed, format!("{HEADER}{}{bad}", row(2, "31", "00000021"))).unwrap();
    let o = pedulicovid(dir.path(), &["--json", "import", mixed.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let out = stdout(&o);
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["accepted"], 1, "{report}");
    assert_eq!(report["rejected_rows"], 1, "{report}");
    assert_eq!(report["rejections"][0]["line"], 3, "{report}");
    assert_eq!(report["rejections"][0]["field"], "nik", "{report}");

    // The good row of the mixed file is in the registry.
    let found = json_of(&pedulicovid(
        dir.path(),
        &["support", "search", &nik_of(2, "31"), "--json"],
    ));
    assert_eq!(found["results"].as_array().unwrap().len(), 1, "{found}");
}

/// Every command that prints a result prints one line of JSON with
/// `--json`, wherever the flag stands; commands without a result refuse it
/// as a usage error (2).
#[test]
fn json_everywhere_a_result_is_printed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let migrated = json_of(&pedulicovid(d, &["--json", "migrate"]));
    assert_eq!(migrated["migrated"], true, "{migrated}");
    assert_eq!(migrated["backend"], "sqlite", "{migrated}");

    let csv = d.join("r.csv");
    std::fs::write(&csv, format!("{HEADER}{}", row(1, "31", "00000011"))).unwrap();
    json_of(&pedulicovid(
        d,
        &["import", csv.to_str().unwrap(), "--json"],
    ));

    let created = json_of(&pedulicovid(
        d,
        &[
            "campaign",
            "create",
            "--json",
            "--name",
            "Uji",
            "--template",
            "undangan_registrasi",
            "--at",
            "2099-01-01 08:00",
        ],
    ));
    assert_eq!(created["enqueued"], 1, "{created}");
    let id = created["campaign"]["id"].as_i64().unwrap().to_string();
    let moved = json_of(&pedulicovid(
        d,
        &[
            "campaign",
            "schedule",
            &id,
            "--at",
            "2099-02-01 08:00",
            "--json",
        ],
    ));
    assert_eq!(moved["retimed"], 1, "{moved}");
    let paused = json_of(&pedulicovid(d, &["campaign", "pause", &id, "--json"]));
    assert_eq!(paused["campaign"]["status"], "paused", "{paused}");
    let resumed = json_of(&pedulicovid(d, &["campaign", "resume", &id, "--json"]));
    assert_eq!(resumed["campaign"]["status"], "scheduled", "{resumed}");
    let listed = json_of(&pedulicovid(d, &["campaign", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let cancelled = json_of(&pedulicovid(d, &["campaign", "cancel", &id, "--json"]));
    assert_eq!(cancelled["campaign"]["status"], "cancelled", "{cancelled}");
    let by_status = cancelled["report"]["by_status"].as_array().unwrap();
    assert!(
        by_status.contains(&serde_json::json!(["cancelled", 1])),
        "{cancelled}"
    );

    let flags = json_of(&pedulicovid(d, &["flags", "list", "--json", "--all"]));
    assert!(flags.is_array(), "{flags}");

    let token = json_of(&pedulicovid(
        d,
        &[
            "token", "create", "--name", "bot", "--role", "chatbot", "--json",
        ],
    ));
    assert_eq!(token["token"]["role"], "chatbot", "{token}");
    assert!(token["secret"].as_str().unwrap().len() >= 32, "{token}");
    let revoked = json_of(&pedulicovid(d, &["token", "revoke", "bot", "--json"]));
    assert_eq!(revoked["revoked"]["name"], "bot", "{revoked}");

    let templates = json_of(&pedulicovid(d, &["template", "--json"]));
    assert!(
        templates["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "undangan_registrasi"),
        "{templates}"
    );
    let rendered = json_of(&pedulicovid(
        d,
        &["template", "undangan_registrasi", "--json"],
    ));
    assert_eq!(rendered["encoding"], "gsm7", "{rendered}");
    assert!(rendered["segments"].as_u64().unwrap() >= 1, "{rendered}");
    assert!(
        rendered["text"]
            .as_str()
            .unwrap()
            .contains("pedulilindungi"),
        "{rendered}"
    );

    for refused in [
        &["serve", "--json"][..],
        &["flags", "export", "--json"][..],
        &["reregistrations", "export", "--json"][..],
    ] {
        let o = pedulicovid(d, refused);
        assert_eq!(o.status.code(), Some(2), "{refused:?}: {o:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--json"),
            "{o:?}"
        );
    }
}

/// `template NAME` prints the message, then its statistics on a line of
/// their own (the message is what would be sent, to the character).
#[test]
fn template_text_and_statistics_are_separate_lines() {
    let dir = tempfile::tempdir().unwrap();
    let o = pedulicovid(dir.path(), &["template", "undangan_registrasi"]);
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    let stats = lines.last().unwrap();
    assert!(
        stats.starts_with("-- ") && stats.contains("units") && stats.contains("segment"),
        "{out}"
    );
    let text = lines[..lines.len() - 1].join("\n");
    assert!(!text.contains("units"), "{out}");
    let rendered = json_of(&pedulicovid(
        dir.path(),
        &["template", "undangan_registrasi", "--json"],
    ));
    assert_eq!(rendered["text"], text.as_str(), "{out}");
}

/// Fixed choices are checked by the parser (exit 2, the choices listed);
/// the unprefixed `DATABASE_URL` is not read.
#[test]
fn fixed_choices_and_one_environment_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let o = pedulicovid(
        dir.path(),
        &["token", "create", "--name", "x", "--role", "admin"],
    );
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("operator") && err.contains("chatbot"), "{err}");
    let o = pedulicovid(dir.path(), &["--log-format", "yaml", "migrate"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");

    // DATABASE_URL names a file in another directory: it must stay unmade.
    let elsewhere = tempfile::tempdir().unwrap();
    let ignored = elsewhere.path().join("ignored.db");
    let o = Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .args(["migrate"])
        .current_dir(dir.path())
        .env_remove("PEDULICOVID__DATABASE_URL")
        .env("DATABASE_URL", format!("sqlite://{}", ignored.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(!ignored.exists(), "DATABASE_URL was read");
    assert!(dir.path().join("pedulicovid.db").exists(), "the default");
}

/// `config show`: every effective setting with its source (default, file,
/// environment, command line), secrets redacted.
#[test]
fn config_show_says_where_each_value_came_from() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pedulicovid.toml"),
        "[limits]\nsearch_rows = 7\n\n[[gateways]]\nname = \"tsel\"\n\
         [gateways.kannel]\nsendsms_url = \"http://127.0.0.1:13913/cgi-bin/sendsms\"\n\
         password = \"filepass99\"\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .args(["config", "show", "--json", "--log-format", "json"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env("PEDULICOVID__LIMITS__CHATBOT_RATE_PER_SEC", "80")
        .env("PEDULICOVID__GATEWAYS__0__KANNEL__PASSWORD", "envpass77")
        .env(
            "PEDULICOVID__DATABASE_URL",
            "postgres://app:dbpass55@127.0.0.1/x",
        )
        .output()
        .unwrap();
    let shown = json_of(&o);
    let all = shown.to_string();
    for secret in ["filepass99", "envpass77", "dbpass55"] {
        assert!(!all.contains(secret), "{secret} shown: {all}");
    }
    let find = |key: &str| {
        shown
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["key"] == key)
            .unwrap_or_else(|| panic!("no {key}: {all}"))
            .clone()
    };
    let is = |key: &str, value: &str, source: &str| {
        let l = find(key);
        assert_eq!(
            (l["value"].as_str().unwrap(), l["source"].as_str().unwrap()),
            (value, source),
            "{key}"
        );
    };
    is("limits.search_rows", "7", "file");
    is("limits.chatbot_rate_per_sec", "80", "environment");
    is("limits.resends_per_number_per_day", "3", "default");
    is("gateways.0.name", "\"tsel\"", "file");
    is(
        "gateways.0.kannel.password",
        "\"[redacted]\"",
        "environment",
    );
    is("log.format", "\"json\"", "command line");
    assert_eq!(find("database_url")["source"], "environment");
    assert!(find("database_url")["value"]
        .as_str()
        .unwrap()
        .contains("127.0.0.1"));

    // Text: one `key = value  # source` line each.
    let o = Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .args(["config", "show"])
        .current_dir(dir.path())
        .env_remove("PEDULICOVID__DATABASE_URL")
        .output()
        .unwrap();
    let text = stdout(&o);
    let line = text
        .lines()
        .find(|l| l.starts_with("limits.search_rows "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.ends_with("= 7  # file"), "{line}");
    assert!(!text.contains("filepass99"), "{text}");
}

/// `worker --loops N` counts dispatch loops; the old `--concurrency`, which
/// read as `worker.concurrency` (requests in flight per loop), still works
/// with a warning naming the new flag, and 0 loops is refused by name.
#[test]
fn worker_loops_have_their_own_name_and_the_old_one_warns() {
    let dir = tempfile::tempdir().unwrap();
    // No gateway configured: the worker stops right after its start-up,
    // where the warning is logged.
    let o = pedulicovid(dir.path(), &["worker", "--concurrency", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("`worker --concurrency` is now `worker --loops`"),
        "{err}"
    );
    assert!(err.contains("no gateway configured"), "{err}");
    let o = pedulicovid(dir.path(), &["worker", "--loops", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("is now `worker --loops`"), "{err}");
    assert!(err.contains("no gateway configured"), "{err}");
    let o = pedulicovid(dir.path(), &["worker", "--loops", "0"]);
    assert_eq!(o.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--loops"));
}
