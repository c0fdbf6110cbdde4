//! The `pedulicovid` binary: parses the command line and hands over to
//! [`pedulicovid::cli`].

fn main() -> std::process::ExitCode {
    pedulicovid::cli::main()
}
