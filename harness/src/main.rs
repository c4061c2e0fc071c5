//! The `raftbus` command: parse the command line, set up logging, run, map to an exit code.

use std::process::ExitCode;

use clap::Parser;
use raftbus::cli::Cli;
use raftbus::run::{exit, run};

fn main() -> ExitCode {
    // Usage errors exit with 2 (clap's convention matches the contract).
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,raftbus=info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::ENVIRONMENT);
        }
    };
    let result = runtime.block_on(run(cli));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Every error message already includes its cause.
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
