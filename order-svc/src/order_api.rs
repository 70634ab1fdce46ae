//! `OrderService`: what buyers call. Every request is checked at the edge (`INVALID_ARGUMENT`
//! and nothing written); every change is one statement with its event and its announcement.

use std::time::Duration;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use ticket_platform::auth::Actor;
use ticket_platform::contact::Contact;
use ticket_proto::order::v1 as pb;
use ticket_proto::saga::v1::order_event::Event;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::admission::{Admission, Admitted};
use crate::error::Error;
use crate::guard::Guard;
use crate::order_events::Orchestrator;
use crate::orders::{self, CancelReason, NewOrder, entity};
use crate::tiers::{TierInfo, Tiers};
use crate::watch::Changes;

/// Most tickets in one order, whatever the tier's own limit.
pub const MAX_QUANTITY: i32 = 100;
pub const MAX_ID_LEN: usize = 64;
pub const MAX_PAYMENT_REF_LEN: usize = 128;
pub const MAX_NOTE_LEN: usize = 500;
pub const DEFAULT_PAGE: u64 = 20;
pub const MAX_PAGE: u64 = 100;

pub struct OrderApi {
    pub db: DatabaseConnection,
    pub tiers: Tiers,
    pub admission: Admission,
    pub changes: Changes,
    /// Where a CreateOrder that waits for its decision hands its order at once.
    pub orchestrator: Orchestrator,
    /// The longest such a CreateOrder waits (`create.decision_wait_ms`).
    pub decision_wait: Duration,
    pub metrics: crate::metrics::OrderMetrics,
    /// Who may call, and how often.
    pub guard: Guard,
}

/// A non-empty identifier without spaces, at most `max` characters.
pub fn identifier(field: &str, value: &str, max: usize) -> Result<String, Error> {
    ticket_platform::fields::identifier(field, value, max).map_err(Error::Invalid)
}

impl OrderApi {
    async fn create(&self, request: pb::CreateOrderRequest) -> Result<orders::Order, Error> {
        let user_id = identifier("user_id", &request.user_id, MAX_ID_LEN)?;
        let request_id = identifier("request_id", &request.request_id, MAX_ID_LEN)?;
        if request.tier_id <= 0 {
            return Err(Error::Invalid(format!(
                "tier_id must be a positive id, got {}",
                request.tier_id
            )));
        }
        if !(1..=MAX_QUANTITY).contains(&request.quantity) {
            return Err(Error::Invalid(format!(
                "quantity must be between 1 and {MAX_QUANTITY}, got {}",
                request.quantity
            )));
        }
        let contact = request.contact.unwrap_or_default();
        let contact = Contact::parse(
            "contact",
            &contact.email,
            &contact.phone,
            &contact.push_token,
        )
        .map_err(Error::Invalid)?;
        let tier = self.tiers.get(request.tier_id).await?;
        if request.quantity > tier.per_user_limit {
            return Err(Error::Invalid(format!(
                "quantity {} is above the limit of {} tickets per buyer of this tier",
                request.quantity, tier.per_user_limit
            )));
        }
        let mut new = NewOrder {
            order_no: orders::new_order_no(),
            user_id,
            request_id,
            show_id: tier.show_id,
            session_id: tier.session_id,
            tier_id: tier.tier_id,
            quantity: request.quantity,
            contact,
        };
        if !self.admission.is_on() {
            return self.create_on_the_flag(&tier, new).await;
        }
        let admitted = self
            .admission
            .admit(
                &tier,
                &new.order_no,
                &new.user_id,
                &new.request_id,
                new.quantity,
            )
            .await?;
        let promised = match admitted {
            Admitted::SoldOut => return Err(sold_out(&tier)),
            Admitted::Promised => true,
            Admitted::Unloaded => false,
            // A repeated request gets its order, even once the tier has sold out since; when
            // the first one's write was lost, it is written now under the admitted number.
            Admitted::Repeat(order_no) => {
                new.order_no = order_no;
                false
            }
        };
        let written = self.write(&new).await;
        // A promise goes back when no order was written under it: the request had its order
        // already (the request names that one from now on, when of this tier), or the
        // database refused (the request is forgotten too).
        let withdrawal = match &written {
            Ok((_, true)) => None,
            Ok((order, false)) => {
                Some((order.tier_id == tier.tier_id).then(|| order.order_no.clone()))
            }
            Err(_) => Some(None),
        };
        if promised
            && let Some(existing) = withdrawal
            && let Err(err) = self
                .admission
                .withdraw(
                    &tier,
                    &new.order_no,
                    &new.user_id,
                    &new.request_id,
                    existing.as_deref(),
                )
                .await
        {
            tracing::warn!(error = %err, "a promise was not withdrawn; it lapses after the hold");
        }
        answer(written?, &new)
    }

    /// Creates the order with admission off: a repeated request gets its order, even once the
    /// tier has sold out since; otherwise the tier's sold-out flag refuses.
    async fn create_on_the_flag(
        &self,
        tier: &TierInfo,
        new: NewOrder,
    ) -> Result<orders::Order, Error> {
        if let Some(order) = entity::Entity::find()
            .filter(entity::Column::UserId.eq(&new.user_id))
            .filter(entity::Column::RequestId.eq(&new.request_id))
            .one(&self.db)
            .await?
        {
            return same_request(order, new.tier_id, new.quantity);
        }
        if self.tiers.is_sold_out(tier).await? {
            return Err(sold_out(tier));
        }
        answer(self.write(&new).await?, &new)
    }

    /// Writes the order and its event (one statement); `false` with the order that (user,
    /// request id) already had.
    async fn write(&self, new: &NewOrder) -> Result<(orders::Order, bool), Error> {
        let written = orders::create(&self.db, new).await?;
        if written.1 {
            // Its ORDER_CREATED goes out now, not at the relay's next poll.
            ticket_platform::outbox::committed();
            self.metrics.created.inc();
        }
        Ok(written)
    }

    /// The synchronous chain: hands a new order to the orchestrator over gRPC and answers once
    /// the saga has decided it (it left `PENDING`).
    async fn decided(&self, order: orders::Order) -> Result<pb::Order, Status> {
        if orders::status_of(&order)? != orders::Status::Pending {
            return Ok(orders::message(&order));
        }
        let order_no = order.order_no.clone();
        let mut changes = self.changes.watch(self.db.clone(), order.clone());
        if let Err(err) = self
            .orchestrator
            .deliver(Event::Created(orders::created_event(&order)))
            .await
        {
            // The outbox carries the event too; the wait tells whether it arrived.
            tracing::warn!(error = %err, %order_no, "order not handed to the orchestrator");
        }
        let decision = async {
            while let Some(now) = changes.recv().await {
                let now = now?;
                if now.status() != pb::OrderStatus::Pending {
                    return Ok(now);
                }
            }
            Err(Status::unavailable("the order's changes ended; watch it"))
        };
        tokio::time::timeout(self.decision_wait, decision)
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "order {order_no} was not decided within {:?}; it stands, watch it",
                    self.decision_wait
                ))
            })?
    }
}

/// A written order, or the one its (user, request id) already had, unless the request asked
/// for something else.
fn answer((order, created): (orders::Order, bool), new: &NewOrder) -> Result<orders::Order, Error> {
    if created {
        Ok(order)
    } else {
        same_request(order, new.tier_id, new.quantity)
    }
}

/// The order a (user, request id) made, unless the request asked for something else.
fn same_request(order: orders::Order, tier_id: i64, quantity: i32) -> Result<orders::Order, Error> {
    if order.tier_id != tier_id || order.quantity != quantity {
        return Err(Error::AlreadyExists(format!(
            "request_id {} was already used for order {} ({} ticket(s) of tier {}); \
             use a new request id for a new order",
            order.request_id, order.order_no, order.quantity, order.tier_id
        )));
    }
    Ok(order)
}

fn sold_out(tier: &TierInfo) -> Error {
    Error::SoldOut(format!("tier {} is sold out", tier.tier_id))
}

fn order_no(value: &str) -> Result<String, Error> {
    identifier("order_no", value, MAX_ID_LEN)
}

/// The order, when `actor` may see it: another buyer's order is answered as one that does not
/// exist, so order numbers are not confirmed to those who guess them.
fn seen_by(
    found: Option<orders::Order>,
    actor: &Actor,
    order_no: &str,
) -> Result<orders::Order, Error> {
    found
        .filter(|order| actor.may_see(&order.user_id))
        .ok_or_else(|| Error::NotFound(format!("order {order_no} does not exist")))
}

#[tonic::async_trait]
impl pb::order_service_server::OrderService for OrderApi {
    type WatchOrderStream = ReceiverStream<Result<pb::Order, Status>>;

    #[tracing::instrument(skip_all, fields(order_no))]
    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let actor = self.guard.buyer(&request)?;
        let user_id = identifier(
            "user_id",
            &actor.user_id(&request.get_ref().user_id)?,
            MAX_ID_LEN,
        )?;
        self.guard.create_allowed(&request, &user_id)?;
        let request = pb::CreateOrderRequest {
            user_id,
            ..request.into_inner()
        };
        let wait = request.wait_for_decision;
        let order = self.create(request).await.inspect_err(|err| match err {
            Error::SoldOut(_) => self.metrics.refused("sold_out"),
            Error::Invalid(_) => self.metrics.refused("invalid"),
            Error::AlreadyExists(_) => self.metrics.refused("exists"),
            _ => {}
        })?;
        tracing::Span::current().record("order_no", order.order_no.as_str());
        if wait {
            return Ok(Response::new(self.decided(order).await?));
        }
        Ok(Response::new(orders::message(&order)))
    }

    #[tracing::instrument(skip_all)]
    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let actor = self.guard.buyer(&request)?;
        let order_no = order_no(&request.into_inner().order_no)?;
        let found = orders::find(&self.db, &order_no)
            .await
            .map_err(Error::from)?;
        let order = seen_by(found, &actor, &order_no)?;
        Ok(Response::new(orders::message(&order)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let actor = self.guard.buyer(&request)?;
        let request = request.into_inner();
        let user_id = identifier("user_id", &actor.user_id(&request.user_id)?, MAX_ID_LEN)?;
        let size = match u64::try_from(request.page_size) {
            Ok(0) => DEFAULT_PAGE,
            Ok(size) if size <= MAX_PAGE => size,
            _ => {
                return Err(
                    Error::Invalid(format!("page_size must be between 0 and {MAX_PAGE}")).into(),
                );
            }
        };
        let before = match request.page_token.as_str() {
            "" => i64::MAX,
            token => token
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| Error::Invalid("page_token is not one this service gave".into()))?,
        };
        let found = entity::Entity::find()
            .filter(entity::Column::UserId.eq(&user_id))
            .filter(entity::Column::Id.lt(before))
            .order_by_desc(entity::Column::Id)
            .limit(size + 1)
            .all(&self.db)
            .await
            .map_err(Error::from)?;
        let more = found.len() as u64 > size;
        let page: Vec<&orders::Order> = found
            .iter()
            .take(usize::try_from(size).unwrap_or(usize::MAX))
            .collect();
        let next_page_token = match (more, page.last()) {
            (true, Some(last)) => last.id.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListOrdersResponse {
            orders: page.into_iter().map(orders::message).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(order_no))]
    async fn watch_order(
        &self,
        request: Request<pb::WatchOrderRequest>,
    ) -> Result<Response<Self::WatchOrderStream>, Status> {
        let actor = self.guard.buyer(&request)?;
        let order_no = order_no(&request.into_inner().order_no)?;
        tracing::Span::current().record("order_no", order_no.as_str());
        // Subscribed first: a change that commits while the order is read is heard.
        let subscription = self.changes.subscribe(&order_no);
        let found = orders::find(&self.db, &order_no)
            .await
            .map_err(Error::from)?;
        let order = seen_by(found, &actor, &order_no)?;
        let stream = subscription.stream(self.db.clone(), order);
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    #[tracing::instrument(skip_all, fields(order_no))]
    async fn pay_order(
        &self,
        request: Request<pb::PayOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        self.guard.access.payment(&request)?;
        let request = request.into_inner();
        let order_no = order_no(&request.order_no)?;
        tracing::Span::current().record("order_no", order_no.as_str());
        let payment_ref = identifier("payment_ref", &request.payment_ref, MAX_PAYMENT_REF_LEN)?;
        if request.amount_cents <= 0 {
            return Err(Error::Invalid(format!(
                "amount_cents must be positive, got {}",
                request.amount_cents
            ))
            .into());
        }
        let amount = request.amount_cents;
        let (order, paid) = orders::pay(&self.db, &order_no, &payment_ref, amount).await?;
        if paid {
            // Its ORDER_PAID goes out now, not at the relay's next poll.
            ticket_platform::outbox::committed();
            self.metrics.paid.inc();
        }
        Ok(Response::new(orders::message(&order)))
    }

    #[tracing::instrument(skip_all, fields(order_no))]
    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let actor = self.guard.buyer(&request)?;
        let request = request.into_inner();
        let order_no = order_no(&request.order_no)?;
        tracing::Span::current().record("order_no", order_no.as_str());
        if let Actor::Buyer(_) = actor {
            // An order's buyer never changes: checked before the change, not within it.
            let found = orders::find(&self.db, &order_no)
                .await
                .map_err(Error::from)?;
            seen_by(found, &actor, &order_no)?;
        }
        let note = ticket_platform::fields::text("reason", &request.reason, MAX_NOTE_LEN, false)
            .map_err(Error::Invalid)?;
        let note = (!note.is_empty()).then_some(note.as_str());
        let (order, cancelled) =
            orders::cancel(&self.db, &order_no, CancelReason::UserCancelled, note).await?;
        if cancelled {
            ticket_platform::outbox::committed();
            self.metrics.cancelled(CancelReason::UserCancelled);
        }
        Ok(Response::new(orders::message(&order)))
    }
}
