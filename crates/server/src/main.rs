//! The `airwave-server` binary: all of it is in the library.

fn main() -> std::process::ExitCode {
    airwave_server::cli::main()
}
