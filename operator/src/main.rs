//! The `silo-operator` binary: see `silo_operator::cli`.

fn main() -> std::process::ExitCode {
    silo_operator::cli::main()
}
