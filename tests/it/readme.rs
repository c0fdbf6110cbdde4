//! The README's command-line reference is the program's own `--help`
//! ([`pedulicovid::cli::doc`]). Run with `PEDULICOVID_BLESS=1` to rewrite it
//! after changing a command.

use pedulicovid::cli::doc::{markdown, BEGIN, END};

#[test]
fn readme_cli_reference_matches_the_program() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let start = readme
        .find(BEGIN)
        .expect("README has the reference's begin marker")
        + BEGIN.len();
    let end = readme[start..]
        .find(END)
        .expect("README has the end marker")
        + start;
    let want = format!("\n\n{}", markdown());
    if readme[start..end] == want {
        return;
    }
    if std::env::var_os("PEDULICOVID_BLESS").is_some() {
        let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
        std::fs::write(path, updated).expect("rewrite README.md");
        return;
    }
    panic!(
        "README.md's CLI reference differs from the program's --help; \
         run `PEDULICOVID_BLESS=1 cargo test --test it readme` and commit README.md"
    );
}

#[test]
fn reference_covers_every_command() {
    let md = markdown();
    for cmd in [
        "demo",
        "run",
        "serve",
        "worker",
        "migrate",
        "import",
        "campaign create",
        "flags export",
        "token create",
        "support resend",
        "carrier-sim",
        "gateways status",
    ] {
        assert!(
            md.contains(&format!("#### `pedulicovid {cmd}`")),
            "{cmd} missing"
        );
    }
    assert!(!md.contains("#### `pedulicovid help`"));
    // The benchmarks are their own binary (crates/bench), not a command.
    assert!(!md.contains("#### `pedulicovid bench"));
}

#[test]
fn every_argument_says_what_it_is() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str();
            if ["help", "version"].contains(&id) {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = vec![];
    walk(
        &pedulicovid::cli::Cli::command(),
        "pedulicovid",
        &mut missing,
    );
    assert!(
        missing.is_empty(),
        "arguments without help text: {missing:?}"
    );
}
