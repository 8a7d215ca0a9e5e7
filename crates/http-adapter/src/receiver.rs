//! A webhook receiver on loopback for tests (feature `test-support`): it records every
//! request it gets and answers the first ones it is told to fail with 500, the others with
//! 204, after a delay if told to (so that a test can stop the sender mid-delivery).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// Its headers, names in lower case.
    pub headers: HashMap<String, String>,
    /// Its body.
    pub body: String,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    /// A header's value, empty if absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// The event type in the body.
    pub fn event_type(&self) -> String {
        let body: serde_json::Value = serde_json::from_str(&self.body).expect("a JSON body");
        body["type"].as_str().expect("a type").to_owned()
    }
}

/// The receiver, serving until dropped.
pub struct Receiver {
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts a receiver that answers the first `failures` requests with 500.
    pub async fn start(failures: usize) -> Self {
        Self::start_answering_after(failures, Duration::ZERO).await
    }

    /// Starts a receiver that answers the first `failures` requests with 500, each request
    /// `delay` after it arrived.
    pub async fn start_answering_after(failures: usize, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://127.0.0.1:{}/hook", listener.local_addr().expect("address").port());
        let received = Arc::new(Mutex::new(Vec::new()));
        let failures_left = Arc::new(AtomicUsize::new(failures));
        let arrived = Arc::new(AtomicUsize::new(0));
        let answered = Arc::new(AtomicUsize::new(0));
        let counts = (Arc::clone(&arrived), Arc::clone(&answered));
        let (log, left) = (Arc::clone(&received), failures_left);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (log, left) = (Arc::clone(&log), Arc::clone(&left));
                let counts = (Arc::clone(&counts.0), Arc::clone(&counts.1));
                tokio::spawn(async move {
                    let _ = serve(stream, &log, &left, (&counts.0, &counts.1), delay).await;
                });
            }
        });
        Self { url, received, arrived, answered, task }
    }

    /// How many requests have arrived and not been answered yet.
    pub fn in_flight(&self) -> usize {
        self.arrived.load(Ordering::SeqCst).saturating_sub(self.answered.load(Ordering::SeqCst))
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// Waits (up to `limit`) until `done` holds of what was received; panics with what was
    /// received if it never does.
    pub async fn wait_for(&self, limit: Duration, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let received = self.received();
            if done(&received) {
                return received;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not received in time; got {:?}",
                received.iter().map(|r| (r.event_type(), r.status)).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    log: &Mutex<Vec<Received>>,
    failures_left: &AtomicUsize,
    (arrived, answered): (&AtomicUsize, &AtomicUsize),
    delay: Duration,
) -> std::io::Result<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = buffer[header_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    // Recorded as it arrives, so the record is in arrival order (a sender that answers a
    // 500 with a quick retry must not see the retry recorded first).
    let fail = failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    let status = if fail { 500 } else { 204 };
    log.lock().expect("lock").push(Received { headers, body: String::from_utf8_lossy(&body).into_owned(), status });
    arrived.fetch_add(1, Ordering::SeqCst);
    // A sender killed meanwhile never reads the answer, and sends the event again later.
    tokio::time::sleep(delay).await;
    let reason = if fail { "Internal Server Error" } else { "No Content" };
    let written = stream
        .write_all(format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").as_bytes())
        .await;
    // Done with, whether or not the sender was still there to read the answer.
    answered.fetch_add(1, Ordering::SeqCst);
    written?;
    stream.shutdown().await
}
