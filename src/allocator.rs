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
/// `MIMALLOC_PURGE_DELAY` (mimalloc reads its environment itself; that
/// choice wins). Call it first thing in `main`.
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
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

    const CHILD: &str = "PEDULICOVID_TEST_ALLOCATOR_CHILD";

    /// Runs this test binary again, with `MIMALLOC_PURGE_DELAY=4321`, for
    /// [`the_operators_purge_delay_wins_and_the_option_is_mimallocs`].
    #[test]
    fn the_operators_purge_delay_wins_and_the_option_is_mimallocs() {
        if std::env::var_os(CHILD).is_some() {
            // mimalloc read the variable into the option we name...
            assert_eq!(purge_delay_ms(), 4321);
            // ...and `tune` leaves it.
            tune();
            assert_eq!(purge_delay_ms(), 4321);
            println!("child checked");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "allocator::tests::the_operators_purge_delay_wins_and_the_option_is_mimallocs",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .env("MIMALLOC_PURGE_DELAY", "4321")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("child checked"),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn tune_sets_the_delay_when_the_operator_did_not() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the child above, or an operator's run
        }
        tune();
        assert_eq!(purge_delay_ms(), PURGE_DELAY_MS);
    }
}
