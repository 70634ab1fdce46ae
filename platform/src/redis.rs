//! How every service connects to Redis: one pool, with a reconnect policy and timeouts, so
//! that while Redis is down a call that needs it fails within seconds (the caller answers
//! `UNAVAILABLE`) and, when Redis is back, the pool reconnects by itself.
//!
//! Without these, fred's default is to wait for a reply for ever and never to reconnect: a
//! Redis restart left every call hanging and a drain waiting on them.

use std::time::Duration;

use fred::prelude::*;
use fred::types::config::UnresponsiveConfig;

/// The longest a command waits for its reply, queued while reconnecting included.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a connection attempt (TCP connect and handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect attempts back off from this delay ...
const RECONNECT_MIN_DELAY_MS: u32 = 100;
/// ... to at most this one, and never give up.
const RECONNECT_MAX_DELAY_MS: u32 = 1_000;

/// A pool of `connections` to `url` that reconnects for ever (100 ms doubling to 1 s between
/// attempts), fails a command after [`COMMAND_TIMEOUT`] and drops a connection that has not
/// answered for as long. Connects before it returns: a Redis that is down at start-up is an
/// error, not a wait.
pub async fn connect(url: &str, connections: usize) -> Result<Pool, Error> {
    let config = Config::from_url(url)?;
    let pool = Builder::from_config(config)
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            RECONNECT_MIN_DELAY_MS,
            RECONNECT_MAX_DELAY_MS,
            2,
        ))
        .with_connection_config(|connection| {
            connection.connection_timeout = CONNECT_TIMEOUT;
            connection.internal_command_timeout = CONNECT_TIMEOUT;
            // A command is sent at most twice: once, and again if its connection closed
            // while it was in flight. Its timeout bounds both.
            connection.max_command_attempts = 2;
            // Commands go out at once rather than behind the previous one's ACK (Nagle).
            connection.tcp.nodelay = Some(true);
            connection.unresponsive = UnresponsiveConfig {
                max_timeout: Some(COMMAND_TIMEOUT),
                interval: Duration::from_millis(500),
            };
        })
        .with_performance_config(|performance| {
            performance.default_command_timeout = COMMAND_TIMEOUT;
        })
        .build_pool(connections.max(1))?;
    pool.init().await?;
    Ok(pool)
}
