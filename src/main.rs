//! The `ephemera` binary: everything lives in the library; see `ephemera::cli`.

fn main() -> std::process::ExitCode {
    ephemera::cli::main()
}
