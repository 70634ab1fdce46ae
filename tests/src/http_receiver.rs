//! A notification provider's HTTP endpoint for tests, on a socket of its own: it records every
//! request it gets and answers each with the next status of its script (then with its
//! default), a 2xx with `{"id": "msg-<n>"}`, any other with an error that quotes the
//! recipient (as providers' errors often do).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
}

#[derive(Default)]
struct Script {
    next: VecDeque<u16>,
    default: u16,
    received: Vec<Received>,
}

#[derive(Clone)]
pub struct HttpReceiver {
    pub addr: SocketAddr,
    script: Arc<Mutex<Script>>,
}

impl HttpReceiver {
    /// A receiver answering `statuses` in turn, then `default`.
    pub async fn start(statuses: &[u16], default: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let script = Arc::new(Mutex::new(Script {
            next: statuses.iter().copied().collect(),
            default,
            received: Vec::new(),
        }));
        let shared = Arc::clone(&script);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let script = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = serve(stream, script).await;
                });
            }
        });
        Self { addr, script }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers `status` from now on.
    pub fn answer(&self, status: u16) {
        let mut script = self.script.lock().expect("script");
        script.next.clear();
        script.default = status;
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().expect("script").received.clone()
    }
}

async fn serve(stream: tokio::net::TcpStream, script: Arc<Mutex<Script>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let mut headers = HashMap::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            headers.insert(name.trim().to_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    let request = String::from_utf8_lossy(&body).into_owned();
    let (status, n) = {
        let mut script = script.lock().expect("script");
        script.received.push(Received {
            path,
            headers,
            body: request.clone(),
        });
        let status = script.next.pop_front().unwrap_or(script.default);
        (status, script.received.len())
    };
    let answer = if (200..300).contains(&status) {
        format!("{{\"id\": \"msg-{n}\"}}")
    } else {
        let to = serde_json::from_str::<serde_json::Value>(&request)
            .ok()
            .and_then(|v| v.get("to").and_then(|to| to.as_str()).map(str::to_owned))
            .unwrap_or_default();
        format!("{{\"error\": \"cannot deliver to {to} now\"}}")
    };
    let response = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{answer}",
        answer.len()
    );
    let mut stream = reader.into_inner();
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
