//! The `tokengate` binary: parses the command line and hands over to the library.

use clap::Parser;

// The allocator is a build-time choice (docs/BENCHMARKS.md has the measurements).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(all(feature = "jemalloc", not(feature = "mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use tokengate::cli::{self, Cli, Command};
use tokengate::server::{Application, shutdown_signal};

fn main() -> std::process::ExitCode {
    // A single-threaded runtime: `serve` starts one more per extra worker (`workers`),
    // each with its own listener, so no request is handed between threads.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("tokengate: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => cli::init(args).await,
        Command::Completions { shell } => cli::completions(shell),
        Command::Serve(args) => serve(args).await,
        Command::Accounts { command, remote } => cli::accounts(command, remote).await,
        Command::Instances { command, remote } => cli::instances(command, remote).await,
        Command::SecurityToken { command, remote } => cli::security_token(command, remote).await,
        Command::Tokens { command, remote } => cli::tokens(command, remote).await,
        Command::Members { command, remote } => tokengate::admin_commands::members(command, remote).await,
        Command::Webhooks { command, remote } => tokengate::admin_commands::webhooks(command, remote).await,
        Command::Reports { command, remote } => tokengate::admin_commands::reports(command, remote).await,
        Command::Leaks { command, remote } => tokengate::admin_commands::leaks(command, remote).await,
        Command::RoomApps { command, remote } => cli::room_apps(command, remote).await,
        Command::RoomTokens { command, remote } => cli::room_tokens(command, remote).await,
        Command::OauthClients { command, remote } => cli::oauth_clients(command, remote).await,
        Command::SigningKeys { command, remote } => cli::signing_keys(command, remote).await,
        Command::TrustedIssuers { command, remote } => cli::trusted_issuers(command, remote).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokengate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: cli::ServeArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    if args.print_config {
        print!("{}", config.redacted_toml());
        return Ok(());
    }
    tokengate::telemetry::init_tracing(config.log_format, &config.log_level);
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await
}
