//! A service's admin HTTP port, read as Prometheus and Kubernetes read it: a plain HTTP/1.0
//! GET over a socket.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on `addr`: the status code and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|err| panic!("connect to the admin port {addr}: {err}"));
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    (status, body.to_owned())
}

/// What `/metrics` showed at one moment.
#[derive(Clone, Debug)]
pub struct Scrape(pub String);

impl Scrape {
    pub async fn of(addr: SocketAddr) -> Self {
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        Self(body)
    }

    /// The value of one series, written as in the text (`name{label="value",...}`); 0 when
    /// it is not there (a counter not counted yet).
    pub fn value(&self, series: &str) -> f64 {
        self.0
            .lines()
            .find_map(|line| {
                let rest = line.strip_prefix(series)?;
                rest.strip_prefix(' ')?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// The names of every series family it shows (`# TYPE` lines).
    pub fn families(&self) -> Vec<String> {
        self.0
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }
}

/// How much each of `series` grew from `before` to `after`.
pub fn grew(before: &Scrape, after: &Scrape, series: &str) -> f64 {
    after.value(series) - before.value(series)
}
