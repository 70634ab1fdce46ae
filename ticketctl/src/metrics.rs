//! Where a sale shows in the services' metrics: each service's admin port (`/metrics`), read
//! with a plain HTTP GET, and the series worth watching during a sale.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The admin ports of the four services as `scripts/run.sh` starts them, and the series of
/// each worth watching during a sale.
pub const WHERE_TO_LOOK: [(&str, &str, &[&str]); 4] = [
    (
        "order-svc",
        "127.0.0.1:9100",
        &[
            "orders_created_total",
            "orders_refused_total",
            "orders_paid_total",
            "orders_cancelled_total",
            "grpc_server_request_seconds_count",
        ],
    ),
    ("stock-svc", "127.0.0.1:9101", &["stock_prededucts_total"]),
    (
        "orchestrator",
        "127.0.0.1:9102",
        &[
            "sagas_started_total",
            "sagas_ended_total",
            "saga_duration_seconds_count",
            "outbox_backlog_rows",
        ],
    ),
    (
        "notify-svc",
        "127.0.0.1:9103",
        &[
            "mq_messages_consumed_total",
            "mq_consume_delay_seconds_count",
        ],
    ),
];

/// The text of `http://<addr>/metrics`.
pub async fn scrape(addr: &str) -> anyhow::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP answer from {addr}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        anyhow::bail!("{addr} answered {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_owned())
}

/// The sum of every series of `name` (over its labels) in `text`.
pub fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                rest.rsplit_once("} ")?.1
            } else {
                rest.strip_prefix(' ')?
            };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .sum()
}

/// Prints where the sale shows: each service's `/metrics` and the totals of its series.
pub async fn print_where_to_look() {
    println!("where to look (Prometheus text on each service's admin port):");
    for (service, addr, series) in WHERE_TO_LOOK {
        match scrape(addr).await {
            Ok(text) => {
                let totals: Vec<String> = series
                    .iter()
                    .map(|name| format!("{name} {}", total(&text, name)))
                    .collect();
                println!(
                    "  {service:<13} http://{addr}/metrics  {}",
                    totals.join(", ")
                );
            }
            Err(err) => println!("  {service:<13} http://{addr}/metrics  (not reachable: {err})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_adds_every_labelled_series_of_one_name_only() {
        let text = "# TYPE orders_refused counter\n\
                    orders_refused_total{reason=\"sold_out\"} 2760\n\
                    orders_refused_total{reason=\"invalid\"} 3\n\
                    orders_refused_totals 9\n\
                    orders_paid_total 144\n";
        assert_eq!(total(text, "orders_refused_total"), 2763.0);
        assert_eq!(total(text, "orders_paid_total"), 144.0);
        assert_eq!(total(text, "orders_created_total"), 0.0);
    }
}
