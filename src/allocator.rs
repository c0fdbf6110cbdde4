//! Settings of the global allocator, mimalloc (declared by the binaries:
//! `src/main.rs`, and the benchmarks, which measure what ships).

use std::ffi::c_long;

use libmimalloc_sys::{mi_option_get, mi_option_set, mi_option_t};

/// How long memory freed by the process stays mapped before mimalloc
/// gives it back to the kernel: 10 s instead of mimalloc's default (1 s,
/// and a multiple of it for whole arenas).
///
/// A campaign frees and allocates the same memory in cycles (each claimed
/// batch, each receipt batch, each connection's buffers), some longer
/// than a second apart. Given back, every such page came back as a page
/// fault and a zeroed page: measured on a 30 k campaign, 0.094 faults a
/// receipt on the server's thread and 0.05 a notice on the dispatcher's,
/// down to 0.003 and 0.001 with this delay, for about 2 % less CPU a
/// notice (BENCHMARKS.md, fourteenth pass). Memory still goes back to
/// the kernel once the process is idle for the delay.
pub const PURGE_DELAY_MS: c_long = 10_000;

/// `mi_option_purge_delay`: its place in mimalloc's `mi_option_e` (the same
/// in v2, as `reset_delay`, and v3). `libmimalloc-sys` names no constant
/// for it; the test below checks it against mimalloc's own reading of
/// `MIMALLOC_PURGE_DELAY`.
const MI_OPTION_PURGE_DELAY: mi_option_t = 15;

/// Applies [`PURGE_DELAY_MS`], unless the operator set
/// `MIMALLOC_PURGE_DELAY` (or its older name `MIMALLOC_RESET_DELAY`):
/// mimalloc reads its environment itself, and that choice wins. Call it
/// first thing in `main`.
pub fn tune() {
    let set_by_operator = ["MIMALLOC_PURGE_DELAY", "MIMALLOC_RESET_DELAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    if !set_by_operator {
        // SAFETY: sets one integer option, which mimalloc reads atomically.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

/// The purge delay in force, in milliseconds.
pub fn purge_delay_ms() -> c_long {
    // SAFETY: reads one integer option.
    unsafe { mi_option_get(MI_OPTION_PURGE_DELAY) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set (to the delay expected) in the child runs below.
    const CHILD: &str = "PEDULICOVID_TEST_ALLOCATOR_CHILD";

    /// Runs this test binary again with each of mimalloc's names for the
    /// delay set: mimalloc reads it into the option we name, and [`tune`]
    /// leaves it.
    #[test]
    fn the_operators_purge_delay_wins_and_the_option_is_mimallocs() {
        if let Some(expected) = std::env::var_os(CHILD) {
            let expected: c_long = expected.to_str().unwrap().parse().unwrap();
            assert_eq!(purge_delay_ms(), expected);
            tune();
            assert_eq!(purge_delay_ms(), expected);
            println!("child checked");
            return;
        }
        for (name, value) in [
            ("MIMALLOC_PURGE_DELAY", "4321"),
            ("MIMALLOC_RESET_DELAY", "4322"),
        ] {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "allocator::tests::the_operators_purge_delay_wins_and_the_option_is_mimallocs",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, value)
                .env(name, value)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("child checked"),
                "{name}: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn tune_sets_the_delay_when_the_operator_did_not() {
        if std::env::var_os(CHILD).is_some()
            || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some()
            || std::env::var_os("MIMALLOC_RESET_DELAY").is_some()
        {
            return; // a child run above, or an operator's own setting
        }
        tune();
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
    }
}
