//! `StockService` over gRPC: the same handler as the saga's commands, for operators, tools and
//! benchmarks. Changes need the admin token; business refusals of a prededuct are answers
//! (`outcome`), refusals of a confirm or rollback are `FAILED_PRECONDITION`.

use sea_orm::DatabaseConnection;
use ticket_proto::stock::v1 as pb;
use tonic::{Request, Response, Status};

use crate::catalog::validate;

use crate::error::Error;
use crate::gate::{FenceOutcome, PredeductOutcome, TierCounters};
use crate::reconciliation::Reconciliation;
use crate::stock::{Effect, Record, Stock, StockRequest, StockStep};

pub struct StockApi {
    pub stock: Stock,
    pub access: ticket_platform::auth::Access,
}

impl StockApi {
    async fn run(&self, request: StockRequest) -> Result<Effect, Error> {
        self.stock
            .execute(&request, Record::<DatabaseConnection>::Writer)
            .await
    }

    async fn change(&self, request: StockRequest) -> Result<pb::StockChange, Error> {
        let order = request.order_no.clone();
        let tier_id = request.step.tier_id();
        let Effect::Changed(change) = self.run(request).await? else {
            return Err(Error::Invalid("not a confirm or rollback".into()));
        };
        let fence = match change.outcome {
            FenceOutcome::Confirmed => "CONFIRMED",
            FenceOutcome::RolledBack => "ROLLED_BACK",
            FenceOutcome::AlreadyConfirmed => {
                return Err(Error::Refused(format!(
                    "order {order} is confirmed; its tickets cannot be returned"
                )));
            }
            FenceOutcome::AlreadyRolledBack => {
                return Err(Error::Refused(format!(
                    "order {order} was rolled back; it cannot be confirmed"
                )));
            }
            FenceOutcome::UnknownOrder => {
                return Err(Error::Refused(format!(
                    "order {order} holds no tickets of tier {tier_id}; prededuct them first"
                )));
            }
        };
        Ok(pb::StockChange {
            order_no: order,
            tier_id,
            quantity: i32::try_from(change.quantity).unwrap_or(i32::MAX),
            fence: fence.to_owned(),
        })
    }
}

fn stock_message(tier_id: i64, counters: &TierCounters) -> pb::Stock {
    pb::Stock {
        tier_id,
        total: counters.total,
        available: counters.available,
        deducted: counters.deducted,
        confirmed: counters.confirmed,
        sold_out: counters.sold_out,
    }
}

fn reconcile_message(reconciliation: &Reconciliation) -> pb::ReconcileResponse {
    pb::ReconcileResponse {
        redis: Some(stock_message(reconciliation.tier_id, &reconciliation.redis)),
        ledger: Some(stock_message(
            reconciliation.tier_id,
            &reconciliation.ledger,
        )),
        drift: reconciliation.drift(),
        report: reconciliation.report(),
        drifting_orders: reconciliation
            .drifting_orders
            .iter()
            .take(100)
            .cloned()
            .collect(),
    }
}

fn outcome(outcome: PredeductOutcome) -> pb::PredeductOutcome {
    match outcome {
        PredeductOutcome::Deducted => pb::PredeductOutcome::Deducted,
        PredeductOutcome::SoldOut => pb::PredeductOutcome::SoldOut,
        PredeductOutcome::LimitReached => pb::PredeductOutcome::LimitReached,
        PredeductOutcome::SaleNotOpen => pb::PredeductOutcome::SaleNotOpen,
        PredeductOutcome::SaleClosed => pb::PredeductOutcome::SaleClosed,
        PredeductOutcome::AlreadyRolledBack => pb::PredeductOutcome::AlreadyRolledBack,
    }
}

#[tonic::async_trait]
impl pb::stock_service_server::StockService for StockApi {
    #[tracing::instrument(skip_all)]
    async fn prededuct(
        &self,
        request: Request<pb::PredeductRequest>,
    ) -> Result<Response<pb::PredeductResponse>, Status> {
        self.access.admin(&request)?;
        let r = request.into_inner();
        let request = StockRequest::new(
            &r.order_no,
            StockStep::Prededuct {
                tier_id: r.tier_id,
                user_id: r.user_id,
                quantity: i64::from(r.quantity),
            },
        )?;
        let Effect::Prededucted(answer) = self.run(request).await? else {
            return Err(Status::internal("a prededuct answered with another effect"));
        };
        Ok(Response::new(pb::PredeductResponse {
            outcome: outcome(answer.outcome) as i32,
            unit_price_cents: answer.unit_price_cents,
            available: answer.available,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn confirm(
        &self,
        request: Request<pb::ConfirmRequest>,
    ) -> Result<Response<pb::StockChange>, Status> {
        self.access.admin(&request)?;
        let r = request.into_inner();
        let request = StockRequest::new(&r.order_no, StockStep::Confirm { tier_id: r.tier_id })?;
        Ok(Response::new(self.change(request).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::StockChange>, Status> {
        self.access.admin(&request)?;
        let r = request.into_inner();
        let request = StockRequest::new(&r.order_no, StockStep::Rollback { tier_id: r.tier_id })?;
        Ok(Response::new(self.change(request).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn get_stock(
        &self,
        request: Request<pb::GetStockRequest>,
    ) -> Result<Response<pb::Stock>, Status> {
        let tier_id = validate::id("tier_id", request.into_inner().tier_id)?;
        let rules = self.stock.tiers.get(tier_id).await?;
        let counters = self.stock.counters(&rules).await?;
        Ok(Response::new(stock_message(tier_id, &counters)))
    }

    #[tracing::instrument(skip_all)]
    async fn reconcile(
        &self,
        request: Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        // Its answer names orders in flight, and each call reads a tier's every fence.
        self.access.admin(&request)?;
        let r = request.into_inner();
        let tier_id = validate::id("tier_id", r.tier_id)?;
        let reconciliation = if r.repair {
            self.stock.repair(tier_id).await?
        } else {
            self.stock.reconcile(tier_id).await?
        };
        Ok(Response::new(reconcile_message(&reconciliation)))
    }
}
