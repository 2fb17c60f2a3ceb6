//! `bookingd`, built inside this package so that the system tests can start it as a process
//! of its own (and kill it) with a binary cargo keeps up to date for them.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    api::cli::run(api::config::Cli::parse()).await
}
