//! `bookingd`, built inside this package so that the system tests can start it as a process
//! of its own (and kill it) with a binary cargo keeps up to date for them.

use std::io::Read;

use clap::Parser;

/// Set by the tests that start it: standard input is a pipe from the test process, and its end
/// means that process is gone.
const WATCH_PARENT: &str = "BOOKINGD_SYSTEM_WATCH_PARENT";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::var_os(WATCH_PARENT).is_some() {
        // A test process that dies without killing its children (an abort, a runner's
        // timeout) would leave this server running, holding the test run's output open.
        std::thread::spawn(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            std::process::exit(3);
        });
    }
    api::cli::run(api::config::Cli::parse()).await
}
