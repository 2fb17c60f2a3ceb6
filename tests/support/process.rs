use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::app::{OPERATOR_TOKEN, POOL_SIZE, poll_until};

/// bookingd in a process of its own, so it can be killed with SIGKILL. It exits by itself
/// when the test process goes without killing it: its standard input is a pipe held here.
#[derive(Debug)]
pub(crate) struct BookingdProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) address: String,
}

impl BookingdProcess {
    /// Starts `bookingd serve` on a free port and waits until it answers.
    pub(crate) async fn start(database_url: &str, nats_url: &str) -> Self {
        Self::start_with(database_url, nats_url, &[]).await
    }

    /// The same, with more environment variables.
    pub(crate) async fn start_with(
        database_url: &str,
        nats_url: &str,
        env: &[(&str, String)],
    ) -> Self {
        Self::start_logging(database_url, nats_url, env, Stdio::null()).await
    }

    /// The same, its log (standard output) going to `log`.
    pub(crate) async fn start_logging(
        database_url: &str,
        nats_url: &str,
        env: &[(&str, String)],
        log: Stdio,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_bookingd-system"))
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("NATS_URL", nats_url)
            .env("BOOKINGD_BIND", format!("127.0.0.1:{port}"))
            .env("BOOKINGD_OPERATOR_TOKEN", OPERATOR_TOKEN)
            .env("RUST_LOG", "warn")
            .env("BOOKINGD_DB_POOL_SIZE", POOL_SIZE.to_string())
            .env("BOOKINGD_SYSTEM_WATCH_PARENT", "1")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start bookingd");
        let address = format!("http://127.0.0.1:{port}");
        let health = format!("{address}/api/v2/mcp/health");
        let up = poll_until(Duration::from_secs(30), || async {
            reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(up, "bookingd did not come up on {address}");
        Self { child, address }
    }

    /// SIGTERM, then waits (at most a minute) for the process to exit; its exit status.
    pub(crate) async fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "could not send SIGTERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// SIGKILL: no shutdown, no flush.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BookingdProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
