//! The `warren` binary.

fn main() -> std::process::ExitCode {
    warren_node::cli::main()
}
