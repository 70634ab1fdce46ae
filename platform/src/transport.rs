//! How a service's gRPC server takes calls and its channels make them: message size and
//! per-connection concurrency limits, the longest a call may take, and TLS (optional; mutual
//! when the server is given the CA of its clients).

use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::ConfigSource;

/// `grpc.*` and `tls.*`.
#[derive(Clone, Debug)]
pub struct GrpcConfig {
    /// The largest request message a server decodes (`grpc.max_message_bytes`); a larger one
    /// is answered `OUT_OF_RANGE` (by the framework).
    pub max_message_bytes: usize,
    /// Calls one connection may have in progress at once; more wait.
    pub concurrency_per_connection: usize,
    /// The longest a unary call may take (0: no limit of the server's); a client's shorter
    /// `grpc-timeout` wins.
    pub request_timeout: Duration,
    pub tls: TlsFiles,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
            concurrency_per_connection: 512,
            request_timeout: Duration::from_secs(30),
            tls: TlsFiles::default(),
        }
    }
}

/// PEM files. A server with `cert_file` and `key_file` serves TLS; with `client_ca_file` it
/// also requires a client certificate signed by that CA. A channel to an `https://` address
/// trusts `ca_file` and presents `cert_file` and `key_file` as its own certificate.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub cert_file: String,
    pub key_file: String,
    pub client_ca_file: String,
    pub ca_file: String,
}

impl GrpcConfig {
    pub fn load(source: &mut ConfigSource) -> Self {
        let defaults = Self::default();
        let max_message_bytes = source.get("grpc.max_message_bytes", defaults.max_message_bytes);
        if max_message_bytes < 1024 {
            source.invalid("grpc.max_message_bytes", "must be at least 1024");
        }
        let concurrency_per_connection = source.get(
            "grpc.concurrency_per_connection",
            defaults.concurrency_per_connection,
        );
        if concurrency_per_connection == 0 {
            source.invalid("grpc.concurrency_per_connection", "must be at least 1");
        }
        let request_timeout = source.millis("grpc.request_timeout_ms", defaults.request_timeout);
        let config = Self {
            max_message_bytes,
            concurrency_per_connection,
            request_timeout,
            tls: TlsFiles {
                cert_file: source.string("tls.cert_file", ""),
                key_file: source.string("tls.key_file", ""),
                client_ca_file: source.string("tls.client_ca_file", ""),
                ca_file: source.string("tls.ca_file", ""),
            },
        };
        if let Err(problem) = config.tls.server() {
            source.invalid("tls.cert_file", problem);
        }
        if let Err(problem) = config.tls.client() {
            source.invalid("tls.ca_file", problem);
        }
        config
    }
}

/// Makes ring the process's TLS crypto (the dependency tree enables two providers, so rustls
/// cannot choose one itself). Idempotent.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl TlsFiles {
    /// The server's TLS, or `None` for plaintext.
    pub fn server(&self) -> Result<Option<ServerTlsConfig>, String> {
        install_crypto();
        let Some(identity) = self.identity()? else {
            if !self.client_ca_file.is_empty() {
                return Err("tls.client_ca_file needs tls.cert_file and tls.key_file".into());
            }
            return Ok(None);
        };
        let mut tls = ServerTlsConfig::new().identity(identity);
        if !self.client_ca_file.is_empty() {
            tls = tls.client_ca_root(Certificate::from_pem(read(&self.client_ca_file)?));
        }
        Ok(Some(tls))
    }

    /// What channels to `https://` peers use, or `None` when no CA is given (then only
    /// `http://` peers can be reached).
    pub fn client(&self) -> Result<Option<ClientTlsConfig>, String> {
        install_crypto();
        if self.ca_file.is_empty() {
            return Ok(None);
        }
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&self.ca_file)?));
        if let Some(identity) = self.identity()? {
            tls = tls.identity(identity);
        }
        Ok(Some(tls))
    }

    fn identity(&self) -> Result<Option<Identity>, String> {
        match (self.cert_file.is_empty(), self.key_file.is_empty()) {
            (true, true) => Ok(None),
            (false, false) => Ok(Some(Identity::from_pem(
                read(&self.cert_file)?,
                read(&self.key_file)?,
            ))),
            _ => Err("give both tls.cert_file and tls.key_file, or neither".into()),
        }
    }
}

fn read(path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("{path}: {err}"))
}
