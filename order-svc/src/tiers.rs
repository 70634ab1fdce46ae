//! What order-svc knows of a ticket tier: its place in the catalog and its per-buyer limit,
//! asked of stock-svc's `CatalogService` once and kept (tiers do not change after they are
//! created), and its sold-out flag, read from the live stock in Redis on every new order so a
//! sold-out tier is refused at once. The flag's key carries the hash tag of the tier's session
//! (see [`ticket_platform::stock_keys`]), which the catalog told.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use fred::prelude::*;
use ticket_platform::grpc_client::ClientChannel;
use ticket_platform::grpc_client::Clients;
use ticket_platform::stock_keys;
use ticket_proto::stock::v1 as pb;
use ticket_proto::stock::v1::catalog_service_client::CatalogServiceClient;
use tokio::sync::OnceCell;
use tonic::Code;

use crate::error::Error;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierInfo {
    pub tier_id: i64,
    pub session_id: i64,
    pub show_id: i64,
    /// The most tickets of this tier one buyer may hold (the session's limit, or the tier's
    /// own cap when lower); what they hold in the session's other tiers counts too, and
    /// stock-svc checks that.
    pub per_user_limit: i32,
}

#[derive(Clone)]
pub struct Tiers {
    catalog: CatalogServiceClient<ClientChannel>,
    redis: Pool,
    key_prefix: String,
    /// One cell per tier: the first caller asks the catalog, the others wait for its answer.
    known: Arc<RwLock<HashMap<i64, Arc<OnceCell<TierInfo>>>>>,
}

impl Tiers {
    /// `catalog_addr` is stock-svc's gRPC address (`http://host:port`), connected on first use.
    pub async fn connect(
        catalog_addr: &str,
        redis_url: &str,
        redis_connections: usize,
        key_prefix: &str,
        clients: &Clients,
    ) -> Result<Self, Error> {
        let channel = ticket_platform::grpc_client::connect_lazy(
            "stock-svc",
            catalog_addr,
            std::time::Duration::from_secs(5),
            clients,
        )
        .map_err(Error::Catalog)?;
        let redis = ticket_platform::redis::connect(redis_url, redis_connections).await?;
        Ok(Self {
            catalog: CatalogServiceClient::new(channel),
            redis,
            key_prefix: key_prefix.to_owned(),
            known: Arc::default(),
        })
    }

    /// The Redis pool of the sold-out flags.
    pub fn redis(&self) -> &Pool {
        &self.redis
    }

    /// The tier; `NotFound` when the catalog has no such tier (not remembered: the tier may
    /// be created later).
    pub async fn get(&self, tier_id: i64) -> Result<TierInfo, Error> {
        let cell = {
            let mut known = self
                .known
                .write()
                .map_err(|_| Error::Catalog("the tier cache is poisoned".into()))?;
            Arc::clone(known.entry(tier_id).or_default())
        };
        let result = cell.get_or_try_init(|| self.fetch(tier_id)).await.cloned();
        if result.is_err()
            && let Ok(mut known) = self.known.write()
            && known.get(&tier_id).is_some_and(|c| !c.initialized())
        {
            // Unknown ids are not kept, so bad input cannot grow the map.
            known.remove(&tier_id);
        }
        result
    }

    async fn fetch(&self, tier_id: i64) -> Result<TierInfo, Error> {
        let tier = self
            .catalog
            .clone()
            .get_tier(pb::GetTierRequest { tier_id })
            .await
            .map_err(|status| match status.code() {
                Code::NotFound => Error::NotFound(format!("tier {tier_id} does not exist")),
                Code::InvalidArgument => Error::Invalid(status.message().to_owned()),
                _ => Error::Catalog(status.message().to_owned()),
            })?
            .into_inner();
        Ok(TierInfo {
            tier_id,
            session_id: tier.session_id,
            show_id: tier.show_id,
            per_user_limit: tier.per_user_limit,
        })
    }

    /// Whether the tier's sold-out flag is set in the live stock.
    pub async fn is_sold_out(&self, tier: &TierInfo) -> Result<bool, Error> {
        let flag: Option<i64> = self
            .redis
            .next()
            .hget(
                stock_keys::meta(&self.key_prefix, tier.session_id, tier.tier_id),
                stock_keys::SOLD_OUT_FIELD,
            )
            .await?;
        Ok(flag == Some(1))
    }
}
