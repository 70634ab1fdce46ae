//! A show with one tier on sale now, made through stock-svc's catalog: what the demo and the
//! benches sell; and how the tier's stock ended.

use std::time::{SystemTime, UNIX_EPOCH};

use ticket_proto::stock::v1 as pb;
use ticket_proto::stock::v1::catalog_service_client::CatalogServiceClient;
use ticket_proto::stock::v1::stock_service_client::StockServiceClient;
use tonic::transport::Channel;

use crate::admin;

/// What to put on sale.
pub struct Sale<'a> {
    pub title: &'a str,
    pub venue: &'a str,
    pub tier: String,
    pub price_cents: i64,
    pub total: i64,
    /// The most tickets one buyer may hold (the session's limit; the tier has no cap of its own).
    pub per_user_limit: i32,
}

/// The show, session and tier made.
pub struct OnSale {
    pub show_id: i64,
    pub session_id: i64,
    pub tier_id: i64,
}

/// Now plus `offset_secs`.
fn at(offset_secs: i64) -> Option<prost_types::Timestamp> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    Some(prost_types::Timestamp {
        seconds: now + offset_secs,
        nanos: 0,
    })
}

/// A show, a session tomorrow whose sale opened a minute ago and closes in an hour (with
/// `sale`'s limit per buyer), and `sale`'s tier in it.
pub async fn put_on_sale(channel: Channel, token: &str, sale: Sale<'_>) -> anyhow::Result<OnSale> {
    let mut catalog = CatalogServiceClient::new(channel);
    let show = catalog
        .create_show(admin(
            pb::CreateShowRequest {
                title: sale.title.into(),
                venue: sale.venue.into(),
            },
            token,
        )?)
        .await?
        .into_inner();
    let session = catalog
        .create_session(admin(
            pb::CreateSessionRequest {
                show_id: show.show_id,
                starts_at: at(86_400),
                sale_opens_at: at(-60),
                sale_closes_at: at(3_600),
                per_user_limit: sale.per_user_limit,
            },
            token,
        )?)
        .await?
        .into_inner();
    let tier = catalog
        .create_tier(admin(
            pb::CreateTierRequest {
                session_id: session.session_id,
                name: sale.tier,
                price_cents: sale.price_cents,
                total: sale.total,
                per_user_limit: 0,
            },
            token,
        )?)
        .await?
        .into_inner();
    Ok(OnSale {
        show_id: show.show_id,
        session_id: session.session_id,
        tier_id: tier.tier_id,
    })
}

/// How a tier's stock ended, as stock-svc sees it.
pub struct StockAtEnd {
    /// The live counters.
    pub stock: pb::Stock,
    /// Redis against the ledger, without repairing anything.
    pub reconcile: pb::ReconcileResponse,
    /// The catalog's view of the tier (`sold`).
    pub tier: pb::Tier,
}

/// The stock of `tier_id` at the end of a sale, read as an operator (`token`).
pub async fn stock_at_end(
    channel: Channel,
    tier_id: i64,
    token: &str,
) -> anyhow::Result<StockAtEnd> {
    let mut stock = StockServiceClient::new(channel.clone());
    let counters = stock.get_stock(pb::GetStockRequest { tier_id }).await?;
    let reconcile = stock
        .reconcile(crate::admin(
            pb::ReconcileRequest {
                tier_id,
                repair: false,
            },
            token,
        )?)
        .await?;
    let tier = CatalogServiceClient::new(channel)
        .get_tier(pb::GetTierRequest { tier_id })
        .await?;
    Ok(StockAtEnd {
        stock: counters.into_inner(),
        reconcile: reconcile.into_inner(),
        tier: tier.into_inner(),
    })
}
