//! `bookingd`: see `bookingd --help`.

use clap::Parser;

/// Commands clone and drop aggregates and JSON documents on every request; mimalloc keeps
/// that cheaper than the system allocator, above all with many threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    api::cli::run(api::config::Cli::parse()).await
}
