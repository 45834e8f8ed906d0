//! The `nimbus` binary: `nimbus dev` runs the whole platform in one process; `nimbus gateway`,
//! `nimbus invoker`, `nimbus queue-worker` and `nimbus dlq` run one service each; `nimbus
//! migrate` prepares a database; the other commands are clients of the HTTP API.

// A binary exports nothing: its modules' `pub` items are the crate's internal API.
#![allow(unreachable_pub)]

mod admin;
mod args;
mod bench;
mod client;
mod commands;
mod package;
mod serve;
mod signal;

use clap::Parser as _;

use crate::args::{Cli, Command, DlqArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let serving = matches!(
        cli.command,
        Command::Dev(_)
            | Command::Gateway(_)
            | Command::Invoker(_)
            | Command::QueueWorker(_)
            | Command::Dlq(DlqArgs { command: None, .. })
            | Command::Migrate(_)
            | Command::Bench(_)
    );
    let _telemetry = serving.then(|| nimbus_telemetry::init(cli.log_format));
    if serving {
        nimbus_telemetry::metrics::install();
    }
    match cli.command {
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
        Command::Bench(args) => bench::run(args).await,
    }
}
