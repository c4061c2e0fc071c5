//! The `raftbus` command: parse the command line, set up logging, run, map to an exit code.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use raftbus::cli::Cli;
use raftbus::run::{exit, run};
use raftbus_faults::Lab;

fn main() -> ExitCode {
    // Usage errors exit with 2 (clap's convention matches the contract).
    let cli = Cli::parse();
    // fuser logs two things that are expected here: `[Not Implemented]` for calls the lazy
    // disk answers with ENOSYS (xattrs), and a failed reply when a node was killed in the
    // middle of a request (the kernel already dropped it). Mount errors reach us as errors.
    const DEFAULT_FILTER: &str = "warn,raftbus=info,fuser=error,fuser::reply=off";
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_FILTER)),
        )
        .init();
    // Commands that start servers run inside the lab. Lab::enter needs a single-threaded
    // process, so this comes before the runtime exists. RAFTBUS_LAB=loopback skips it.
    let lab = cli.command.uses_lab().then(|| {
        Arc::new(match std::env::var("RAFTBUS_LAB").as_deref() {
            Ok("loopback") => Lab::loopback("RAFTBUS_LAB=loopback"),
            _ => Lab::enter(),
        })
    });
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
    let result = runtime.block_on(run(cli, lab.clone()));
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    // Removes every host namespace, the nft table and the bridge (also on drop).
    if let Some(lab) = lab {
        if let Err(e) = lab.teardown() {
            tracing::warn!(error = %e, "lab teardown failed");
        }
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Every error message already includes its cause.
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
