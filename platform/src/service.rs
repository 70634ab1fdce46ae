//! The settings every service reads the same way: where it listens (gRPC and the admin HTTP
//! port), its database, messaging, telemetry and the admin token.

use std::net::SocketAddr;

use crate::config::{ConfigErrors, ConfigSource};
use crate::db::DatabaseConfig;
use crate::messaging::MessagingConfig;
use crate::telemetry::TelemetryConfig;

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// gRPC listen address; port 0 picks a free port (tests).
    pub grpc_addr: SocketAddr,
    /// The admin HTTP port's address (`/metrics`, `/livez`, `/readyz`); port 0 picks a free
    /// port (tests).
    pub admin_addr: SocketAddr,
    /// Bearer token for admin calls.
    pub admin_token: String,
    pub database: DatabaseConfig,
    pub messaging: MessagingConfig,
    pub telemetry: TelemetryConfig,
}

impl ServiceConfig {
    /// Reads `<prefix>_*` variables (and `<prefix>_CONFIG_FILE`); reports every problem at once.
    pub fn from_env(
        prefix: &str,
        service: &str,
        default_ports: (u16, u16),
        default_database: &str,
    ) -> Result<Self, ConfigErrors> {
        let mut source = ConfigSource::from_env(prefix);
        let config = Self::load(&mut source, service, default_ports, default_database);
        source.finish().map(|()| config)
    }

    /// `default_ports`: the gRPC port and the admin port.
    pub fn load(
        source: &mut ConfigSource,
        service: &str,
        (default_port, default_admin_port): (u16, u16),
        default_database: &str,
    ) -> Self {
        let default_addr = SocketAddr::from(([127, 0, 0, 1], default_port));
        let grpc_addr = source.get("grpc.addr", default_addr);
        let admin_addr = source.get(
            "admin.addr",
            SocketAddr::from(([127, 0, 0, 1], default_admin_port)),
        );
        let admin_token = source.string("admin_token", "dev-admin-token");
        if admin_token.trim().len() < 8 {
            source.invalid("admin_token", "must be at least 8 characters");
        }
        Self {
            grpc_addr,
            admin_addr,
            admin_token,
            database: DatabaseConfig::load(source, default_database),
            messaging: MessagingConfig::load(source),
            telemetry: TelemetryConfig::load(source, service),
        }
    }
}
