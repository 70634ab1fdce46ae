//! The settings every service reads the same way: where it listens (gRPC and the admin HTTP
//! port), its database, messaging, telemetry, access and the gRPC server's limits and TLS.

use std::net::SocketAddr;

use crate::auth::AccessConfig;
use crate::config::{ConfigErrors, ConfigSource};
use crate::db::DatabaseConfig;
use crate::messaging::MessagingConfig;
use crate::telemetry::TelemetryConfig;
use crate::transport::GrpcConfig;

#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// gRPC listen address; port 0 picks a free port (tests).
    pub grpc_addr: SocketAddr,
    /// The admin HTTP port's address (`/metrics`, `/livez`, `/readyz`); port 0 picks a free
    /// port (tests).
    pub admin_addr: SocketAddr,
    /// The profile and the admin and service tokens.
    pub access: AccessConfig,
    /// Limits and TLS of the gRPC server and channels.
    pub grpc: GrpcConfig,
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
        Self {
            grpc_addr,
            admin_addr,
            access: AccessConfig::load(source),
            grpc: GrpcConfig::load(source),
            database: DatabaseConfig::load(source, default_database),
            messaging: MessagingConfig::load(source),
            telemetry: TelemetryConfig::load(source, service),
        }
    }
}
