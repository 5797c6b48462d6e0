//! The `warren` CLI, built inside this package so its end-to-end tests can name it with
//! `env!("CARGO_BIN_EXE_warren-e2e-node")` (Cargo only exposes a package's own binaries to its
//! tests). Same code as `node/src/main.rs`.

fn main() -> std::process::ExitCode {
    warren_node::cli::main()
}
