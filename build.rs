//! Build script: records the git commit the binary is built from, for
//! `pedulicovid_build_info{commit}` and `--version`-style reports.
//! `PEDULICOVID_COMMIT` wins (a package build from a tarball has no
//! `.git`); otherwise `git rev-parse --short=12 HEAD`; otherwise `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PEDULICOVID_COMMIT");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let commit = std::env::var("PEDULICOVID_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PEDULICOVID_COMMIT={commit}");
}
