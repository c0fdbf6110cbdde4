//! The `pedulicovid` binary: parses the command line and hands over to
//! [`pedulicovid::cli`].

/// See `mimalloc` in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pedulicovid::allocator::tune();
    pedulicovid::cli::main()
}
