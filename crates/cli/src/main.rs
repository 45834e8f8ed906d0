//! The `nimbus` binary: `nimbus dev` runs the whole platform in one process; `nimbus gateway`,
//! `nimbus invoker`, `nimbus queue-worker` and `nimbus dlq` run one service each; `nimbus
//! migrate` prepares a database; the other commands are clients of the HTTP API.

// A binary exports nothing: its modules' `pub` items are the crate's internal API.
#![allow(unreachable_pub)]

mod admin;
mod args;
mod bench;
mod chaos;
mod client;
mod commands;
mod package;
mod serve;
mod signal;

use clap::Parser as _;

use crate::args::{Cli, Command, DlqArgs};

/// glibc's malloc took about a quarter of the gateway's CPU under load (`perf`, the `202`
/// phase of `nimbus bench`), spread over malloc, free and consolidating its free lists;
/// mimalloc took half as much.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let service = match &cli.command {
        Command::Dev(_) => Some("nimbus-dev"),
        Command::Gateway(_) => Some("nimbus-gateway"),
        Command::Invoker(_) => Some("nimbus-invoker"),
        Command::QueueWorker(_) => Some("nimbus-queue-worker"),
        Command::Dlq(DlqArgs { command: None, .. }) => Some("nimbus-dlq"),
        Command::Migrate(_) => Some("nimbus-migrate"),
        Command::Bench(_) => Some("nimbus-bench"),
        Command::Chaos(_) => Some("nimbus-chaos"),
        Command::Dlq(_)
        | Command::Function(_)
        | Command::Invoke(_)
        | Command::Invocations(_)
        | Command::Route(_) => None,
    };
    let telemetry = match service {
        Some(service) => {
            nimbus_telemetry::metrics::install();
            Some(nimbus_telemetry::init(service, cli.log_format).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let result = run(cli.command).await;
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    result
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Dev(args) => serve::dev(args, signal::shutdown_on_signal()?).await,
        Command::Gateway(args) => serve::gateway(args, signal::shutdown_on_signal()?).await,
        Command::Invoker(args) => serve::invoker(args, signal::shutdown_on_signal()?).await,
        Command::QueueWorker(args) => {
            serve::queue_worker(args, signal::shutdown_on_signal()?).await
        }
        Command::Dlq(DlqArgs {
            command: None,
            serve: args,
        }) => serve::dlq(args, signal::shutdown_on_signal()?).await,
        Command::Dlq(DlqArgs {
            command: Some(command),
            ..
        }) => commands::dead_letters(command).await,
        Command::Migrate(args) => serve::migrate(args).await,
        Command::Function(command) => commands::function(command).await,
        Command::Invoke(args) => commands::invoke(args).await,
        Command::Invocations(command) => commands::invocations(command).await,
        Command::Route(command) => commands::route(command).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Chaos(args) => chaos::run(args).await,
    }
}
