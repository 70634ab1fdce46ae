//! Postgres connections and migrations.

use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, Statement};

use crate::config::ConfigSource;

/// See [`DatabaseConfig::acquire_timeout`].
pub const DEFAULT_ACQUIRE_TIMEOUT_MS: u64 = 3_000;

#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:port/database`
    pub url: String,
    pub max_connections: u32,
    /// Run migrations when the service starts (a Kubernetes Job runs `<binary> migrate` instead).
    pub migrate_on_start: bool,
    /// The longest a query waits for a connection (`database.acquire_timeout_ms`): while the
    /// database is down, a call that needs it answers UNAVAILABLE after this.
    pub acquire_timeout: Duration,
}

impl DatabaseConfig {
    /// Only the database settings of the service whose variables start with `prefix` (what
    /// `<binary> migrate` needs; its tokens are not).
    pub fn from_env(
        prefix: &str,
        default_database: &str,
    ) -> Result<Self, crate::config::ConfigErrors> {
        let mut source = ConfigSource::from_env(prefix);
        let config = Self::load(&mut source, default_database);
        source.finish().map(|()| config)
    }

    pub fn load(source: &mut ConfigSource, default_database: &str) -> Self {
        Self {
            url: source.string(
                "database.url",
                &format!("postgres://postgres:postgres@127.0.0.1:5432/{default_database}"),
            ),
            max_connections: source.get("database.max_connections", 20),
            migrate_on_start: source.get("database.migrate_on_start", true),
            acquire_timeout: Duration::from_millis(
                source.get("database.acquire_timeout_ms", DEFAULT_ACQUIRE_TIMEOUT_MS),
            ),
        }
    }
}

pub async fn connect(config: &DatabaseConfig) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(config.url.clone());
    options
        .max_connections(config.max_connections)
        .min_connections(1)
        .connect_timeout(config.acquire_timeout)
        .acquire_timeout(config.acquire_timeout)
        .sqlx_logging(false);
    Database::connect(options).await
}

/// The advisory lock migrations run under (any number, the same for every service: each
/// service has a database of its own, and an advisory lock is per database).
const MIGRATION_LOCK: i64 = 0x7469_636b_6574;

/// Runs `M`'s migrations on `db` under a Postgres advisory lock held on a connection of its
/// own: pods and Jobs that migrate at once take turns, and the later ones find nothing to do.
pub async fn migrate<M: sea_orm_migration::MigratorTrait>(
    db: &DatabaseConnection,
    config: &DatabaseConfig,
) -> Result<(), DbErr> {
    use sea_orm::ConnectionTrait;
    let lock = connect(&DatabaseConfig {
        max_connections: 1,
        ..config.clone()
    })
    .await?;
    lock.execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .await?;
    let migrated = M::up(db, None).await;
    let unlocked = lock
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .await;
    let _ = lock.close().await;
    migrated.and(unlocked.map(|_| ()))
}

/// The server part and the database name of `url`, the name checked to be letters, digits
/// and '_' (it is spliced into `CREATE`/`DROP DATABASE`).
fn split_database_url(url: &str) -> Result<(&str, &str), DbErr> {
    let (server, name) = url
        .rsplit_once('/')
        .ok_or_else(|| DbErr::Custom(format!("database url {url:?} names no database")))?;
    let name = name.split('?').next().unwrap_or(name);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(DbErr::Custom(format!(
            "database name {name:?} must be letters, digits and '_'"
        )));
    }
    Ok((server, name))
}

/// A connection to the server's `postgres` database, to create and drop others. Creating and
/// dropping take a while; that is not worth a slow-statement warning.
async fn maintenance(server: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(format!("{server}/postgres"));
    options.max_connections(1).sqlx_logging(false);
    Database::connect(options).await
}

/// Creates the database named in `url` when it does not exist (through the `postgres`
/// database of the same server). Tests and benchmarks use it for a fresh database each.
pub async fn create_database(url: &str) -> Result<(), DbErr> {
    let (server, name) = split_database_url(url)?;
    let admin = maintenance(server).await?;
    let exists = admin
        .query_one_raw(Statement::from_sql_and_values(
            admin.get_database_backend(),
            "SELECT 1 AS one FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await?
        .is_some();
    if !exists {
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await?;
    }
    admin.close().await?;
    Ok(())
}

/// Drops the database named in `url`, closing whatever sessions it still has.
pub async fn drop_database(url: &str) -> Result<(), DbErr> {
    let (server, name) = split_database_url(url)?;
    let admin = maintenance(server).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    admin.close().await?;
    Ok(())
}
