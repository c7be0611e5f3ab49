//! tug: a lightweight Kubernetes distribution in one binary. Parses the command line, sets up logging
//! and dispatches to the server or agent.

use std::process::ExitCode;

use tug::{cli, config, server, simulator};

use clap::error::ErrorKind;

/// jemalloc rather than glibc's malloc: under pod churn the server spent ~30% of its CPU in malloc/free
/// (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options: freed memory goes back to the system within a second, purged by a background
/// thread, so a burst of work does not leave the server holding its peak (`_RJEM_MALLOC_CONF` in the
/// environment still overrides these).
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_OPTIONS: &[u8; 85] =
    b"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let mut args = std::env::args_os();
    if args.next().is_some_and(|argv0| tug::kubectl::invoked_as_kubectl(&argv0)) {
        return fatal(&tug::kubectl::exec(args.collect(), tug::kubectl::Invocation::Link));
    }
    let cli = match config::parse_cli(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            let _ = e.print();
            return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
        Err(e) => return usage_error(&e.to_string()),
    };
    match cli.command {
        cli::Command::Server(args) => {
            let cfg = match config::ServerConfig::from_args(*args.clone()) {
                Ok(cfg) => cfg,
                Err(e) => return usage_error(&e.to_string()),
            };
            init_logging(args.debug);
            run(server::run(cfg))
        }
        cli::Command::Agent(args) => {
            let cfg = match config::AgentRunConfig::from_args(args.clone()) {
                Ok(cfg) => cfg,
                Err(e) => return usage_error(&e.to_string()),
            };
            init_logging(args.debug);
            run(tug::agent::run(cfg))
        }
        cli::Command::Simulate(args) => {
            let fleet = match simulator::Fleet::from_args(args) {
                Ok(fleet) => fleet,
                Err(e) => return usage_error(&e),
            };
            init_logging(false);
            run(simulator::run(fleet))
        }
        cli::Command::NetworkCleanup => {
            init_logging(false);
            run(tug::network::cleanup())
        }
        cli::Command::Snapshot(args) => {
            init_logging(false);
            run(async move { tug::snapshot::run_command(args) })
        }
        // No logging: the outcome or the error is the output.
        cli::Command::Member(args) => run(tug::member::run_command(args)),
        cli::Command::Certificate(args) => run(async move { tug::certificate::run_command(args) }),
        cli::Command::Token(args) => run(tug::token::run_command(args)),
        cli::Command::CheckConfig(args) => run(async move { tug::check_config::run_command(args) }),
        cli::Command::Kubectl { args } => fatal(&tug::kubectl::exec(args, tug::kubectl::Invocation::Subcommand)),
    }
}

/// Runs `main` to completion on a multi-threaded runtime.
fn run(main: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fatal(&anyhow::anyhow!("cannot start the runtime: {e}")),
    };
    let outcome = runtime.block_on(main);
    // Blocking work still running (a log fsync) may delay the exit this long, no longer.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fatal(&e),
    }
}

/// One line naming the problem, exit code 2.
fn usage_error(message: &str) -> ExitCode {
    let first = message.lines().find(|l| !l.trim().is_empty()).unwrap_or(message);
    let first = first.trim_start_matches("error: ");
    eprintln!("tug: error: {first}");
    ExitCode::from(2)
}

fn fatal(e: &anyhow::Error) -> ExitCode {
    eprintln!("tug: fatal: {e:#}");
    ExitCode::FAILURE
}

fn init_logging(debug: bool) {
    // hickory's server logs every DNS query at info; openraft every step of an election and of
    // replication (tug logs membership changes and leadership itself).
    let default = if debug { "debug" } else { "info,hickory_server=warn,openraft=warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
