//! A TCP proxy in front of a nats-server that can lose one published message on its way while
//! passing on everything after it: what the server sees when a message written just before a
//! connection failed is gone and the ones after it, sent again on the new connection, arrive.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy is to lose: the next message on a subject ending in this.
#[derive(Debug, Default)]
struct Loss {
    subject_suffix: Mutex<Option<String>>,
    happened: AtomicBool,
}

impl Loss {
    /// Whether this message is the one to lose; if so, it is the last.
    fn takes(&self, subject: &str) -> bool {
        let Ok(mut suffix) = self.subject_suffix.lock() else {
            return false;
        };
        if suffix.as_deref().is_some_and(|s| subject.ends_with(s)) {
            *suffix = None;
            self.happened.store(true, Ordering::SeqCst);
            return true;
        }
        false
    }
}

/// The proxy; it stops with the test's runtime.
#[derive(Debug)]
pub(crate) struct LossyProxy {
    port: u16,
    loss: Arc<Loss>,
}

impl LossyProxy {
    /// Listens on a free port and passes every connection on to `upstream_port` on 127.0.0.1.
    pub(crate) async fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let port = listener.local_addr().expect("proxy address").port();
        let loss = Arc::new(Loss::default());
        let shared = loss.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(pass_on(client, upstream_port, shared.clone()));
            }
        });
        Self { port, loss }
    }

    /// The client URL.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Loses the next message published to a subject that ends in `subject_suffix`.
    pub(crate) fn lose_next(&self, subject_suffix: &str) {
        if let Ok(mut suffix) = self.loss.subject_suffix.lock() {
            *suffix = Some(subject_suffix.to_owned());
        }
    }

    /// Whether the message asked for has been lost.
    pub(crate) fn has_lost(&self) -> bool {
        self.loss.happened.load(Ordering::SeqCst)
    }
}

/// One client connection: the server's side copied back as it is, the client's read protocol
/// line by line so that a whole `PUB`/`HPUB` (line and payload) can be left out.
async fn pass_on(client: TcpStream, upstream_port: u16, loss: Arc<Loss>) -> std::io::Result<()> {
    let server = TcpStream::connect(("127.0.0.1", upstream_port)).await?;
    let (client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut reader = BufReader::new(client_read);
    let mut out = Vec::new();
    loop {
        let start = out.len();
        if reader.read_until(b'\n', &mut out).await? == 0 {
            break;
        }
        if let Some((subject, total)) = published(&out[start..]) {
            let mut payload = vec![0; total + 2];
            reader.read_exact(&mut payload).await?;
            if loss.takes(&subject) {
                out.truncate(start);
            } else {
                out.extend_from_slice(&payload);
            }
        }
        // Written when nothing more is already read, so a pipelined burst goes on as one.
        if reader.buffer().is_empty() && !out.is_empty() {
            server_write.write_all(&out).await?;
            out.clear();
        }
    }
    back.abort();
    Ok(())
}

/// The subject and payload length (headers included) of a `PUB` or `HPUB` line.
fn published(line: &[u8]) -> Option<(String, usize)> {
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut words = line.split_ascii_whitespace();
    let verb = words.next()?;
    if !(verb.eq_ignore_ascii_case("PUB") || verb.eq_ignore_ascii_case("HPUB")) {
        return None;
    }
    let subject = words.next()?.to_owned();
    let total = words.last()?.parse().ok()?;
    Some((subject, total))
}
