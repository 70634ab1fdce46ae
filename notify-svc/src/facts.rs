//! What a notification is about and where it goes, asked of the services that own them at the
//! time it is sent: the order and the buyer's contact from order-svc (`ContactService`, behind
//! a token), the show, session and tier from stock-svc's catalog (`CatalogService.GetShow`,
//! kept here a minute: a show's name and times do not change during a sale). Neither is stored
//! here: the contact only masked, the rest only in the rendered text. The notifications of one
//! order sent at once (its event on every channel) share one lookup.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tracing::Instrument;

use ticket_platform::grpc_client::ClientChannel;
use ticket_platform::grpc_client::Clients;
use ticket_platform::time::instant;
use ticket_proto::order::v1 as order_pb;
use ticket_proto::order::v1::contact_service_client::ContactServiceClient;
use ticket_proto::stock::v1 as stock_pb;
use ticket_proto::stock::v1::catalog_service_client::CatalogServiceClient;
use tonic::Code;

use crate::templates::{Facts, amount, session_time};

/// How long a show read from the catalog is used before it is read again.
const SHOW_TTL: Duration = Duration::from_secs(60);
/// Shows kept at most (the cache is emptied past it).
const SHOWS_KEPT: usize = 1024;
/// The longest the lookups of one notification may take together.
pub const LOOKUP_LIMIT: Duration = Duration::from_secs(5);

/// Shows read from the catalog, by id, with when they were read.
type ShowsKept = HashMap<i64, (Instant, Arc<stock_pb::Show>)>;

/// A lookup under way, which every notification of its order sent meanwhile awaits.
type Lookup = Shared<BoxFuture<'static, Result<About, LookupError>>>;

/// Why what a notification is about could not be known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// A service that owns it did not answer: asked again later.
    Unavailable(String),
    /// It answered, and the answer cannot make a message (no such order, a refused token).
    Refused(String),
}

/// An order's buyer contact and what its notifications say (its `Debug` leaves the contact
/// out).
#[derive(Clone)]
pub struct About {
    pub contact: order_pb::Contact,
    pub facts: Facts,
}

impl std::fmt::Debug for About {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("About")
            .field("facts", &self.facts)
            .finish_non_exhaustive()
    }
}

/// Why an order was cancelled, in the words a buyer reads.
pub fn reason_in_words(reason: order_pb::CancelReason) -> Option<&'static str> {
    use order_pb::CancelReason as R;
    Some(match reason {
        R::SoldOut => "the tickets sold out before your order could be held",
        R::LimitReached => "you already hold as many tickets for this session as one buyer may",
        R::UserCancelled => "you cancelled it",
        R::PaymentExpired => "the payment was not made before its deadline",
        R::System => "we could not complete it",
        R::Unspecified => return None,
    })
}

fn lookup_error(service: &str, status: &tonic::Status) -> LookupError {
    let text = format!("{service}: {}", status.message());
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            LookupError::Unavailable(text)
        }
        _ => LookupError::Refused(text),
    }
}

/// order-svc and stock-svc, where notifications learn what they say and where they go.
#[derive(Clone)]
pub struct Sources {
    orders: ContactServiceClient<ClientChannel>,
    token: String,
    catalog: CatalogServiceClient<ClientChannel>,
    shows: Arc<Mutex<ShowsKept>>,
    /// The lookups under way, by order.
    under_way: Arc<Mutex<HashMap<String, Lookup>>>,
}

impl Sources {
    /// Connects lazily to order-svc at `orders_addr` (presenting `token`) and to stock-svc's
    /// catalog at `catalog_addr` (`http://...`), the calls counted in `clients`.
    pub fn new(
        orders_addr: &str,
        token: &str,
        catalog_addr: &str,
        clients: &Clients,
    ) -> Result<Self, String> {
        let channel = |peer, addr| {
            ticket_platform::grpc_client::connect_lazy(peer, addr, Duration::from_secs(5), clients)
        };
        Ok(Self {
            orders: ContactServiceClient::new(channel("order-svc", orders_addr)?),
            token: token.to_owned(),
            catalog: CatalogServiceClient::new(channel("stock-svc", catalog_addr)?),
            shows: Arc::default(),
            under_way: Arc::default(),
        })
    }

    /// What `order_no`'s notifications say and where they go, within [`LOOKUP_LIMIT`]. A
    /// lookup of the order already under way is awaited rather than made again: the
    /// notifications of an event, one per channel, are sent at once. The lookup runs as a task
    /// of its own, so a caller that stops waiting stops nothing, and it leaves the map when
    /// done: a later notification of the order looks it up afresh.
    pub async fn about(&self, order_no: &str) -> Result<About, LookupError> {
        let lookup = {
            let mut under_way = self.under_way.lock().unwrap_or_else(|e| e.into_inner());
            under_way
                .entry(order_no.to_owned())
                .or_insert_with(|| {
                    let sources = self.clone();
                    let order_no = order_no.to_owned();
                    // In the span of the notification that asked first: its calls belong to
                    // that notification's trace.
                    let task = tokio::spawn(
                        async move {
                            let about = sources.look_up_in_time(&order_no).await;
                            sources
                                .under_way
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&order_no);
                            about
                        }
                        .instrument(tracing::Span::current()),
                    );
                    async move {
                        task.await.unwrap_or_else(|err| {
                            Err(LookupError::Unavailable(format!(
                                "the lookup stopped: {err}"
                            )))
                        })
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        lookup.await
    }

    async fn look_up_in_time(&self, order_no: &str) -> Result<About, LookupError> {
        tokio::time::timeout(LOOKUP_LIMIT, self.look_up(order_no))
            .await
            .unwrap_or_else(|_| {
                Err(LookupError::Unavailable(format!(
                    "order-svc and stock-svc did not answer within {LOOKUP_LIMIT:?}"
                )))
            })
    }

    async fn look_up(&self, order_no: &str) -> Result<About, LookupError> {
        let mut request = tonic::Request::new(order_pb::GetContactRequest {
            order_no: order_no.to_owned(),
        });
        let bearer = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| LookupError::Refused("the order-svc token is not ASCII".into()))?;
        request.metadata_mut().insert("authorization", bearer);
        let answer = self
            .orders
            .clone()
            .get_contact(request)
            .await
            .map_err(|status| lookup_error("order-svc", &status))?
            .into_inner();
        let order = answer.order.ok_or_else(|| {
            LookupError::Refused(format!(
                "order-svc: order {order_no} came without its order"
            ))
        })?;
        let facts = self.facts(&order).await?;
        Ok(About {
            contact: answer.contact.unwrap_or_default(),
            facts,
        })
    }

    async fn facts(&self, order: &order_pb::Order) -> Result<Facts, LookupError> {
        // A session or tier added since the show was kept is found by reading it again.
        let mut fresh = false;
        loop {
            let show = self.show(order.show_id, fresh).await?;
            let session = show
                .sessions
                .iter()
                .find(|s| s.session_id == order.session_id);
            let tier = session.and_then(|s| s.tiers.iter().find(|t| t.tier_id == order.tier_id));
            match (session, tier) {
                (Some(session), Some(tier)) => {
                    let starts_at = session
                        .starts_at
                        .as_ref()
                        .and_then(instant)
                        .map_or_else(|| "time to be announced".to_owned(), session_time);
                    return Ok(Facts {
                        order_no: order.order_no.clone(),
                        show: show.title.clone(),
                        venue: show.venue.clone(),
                        session_time: starts_at,
                        tier: tier.name.clone(),
                        quantity: order.quantity,
                        // An order not priced yet (before its reservation) costs the
                        // tier's price.
                        amount: amount(if order.total_cents > 0 {
                            order.total_cents
                        } else {
                            tier.price_cents * i64::from(order.quantity)
                        }),
                        reason: reason_in_words(order.cancel_reason()).map(str::to_owned),
                    });
                }
                _ if !fresh => fresh = true,
                _ => {
                    return Err(LookupError::Refused(format!(
                        "stock-svc: show {} has no session {} with tier {}",
                        order.show_id, order.session_id, order.tier_id
                    )));
                }
            }
        }
    }

    async fn show(&self, show_id: i64, fresh: bool) -> Result<Arc<stock_pb::Show>, LookupError> {
        if !fresh {
            let shows = self.shows.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((read, show)) = shows.get(&show_id)
                && read.elapsed() < SHOW_TTL
            {
                return Ok(Arc::clone(show));
            }
        }
        let show = self
            .catalog
            .clone()
            .get_show(stock_pb::GetShowRequest { show_id })
            .await
            .map_err(|status| lookup_error("stock-svc", &status))?
            .into_inner();
        let show = Arc::new(show);
        let mut shows = self.shows.lock().unwrap_or_else(|e| e.into_inner());
        if shows.len() >= SHOWS_KEPT {
            shows.clear();
        }
        shows.insert(show_id, (Instant::now(), Arc::clone(&show)));
        Ok(show)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cancel_reason_a_buyer_can_meet_is_put_in_words() {
        use order_pb::CancelReason as R;
        for reason in [
            R::SoldOut,
            R::LimitReached,
            R::UserCancelled,
            R::PaymentExpired,
            R::System,
        ] {
            assert!(reason_in_words(reason).is_some_and(|words| !words.is_empty()));
        }
        assert_eq!(reason_in_words(R::Unspecified), None);
    }

    #[test]
    fn a_service_that_does_not_answer_is_asked_again_and_a_refusal_is_not() {
        assert!(matches!(
            lookup_error("order-svc", &tonic::Status::unavailable("down")),
            LookupError::Unavailable(_)
        ));
        assert_eq!(
            lookup_error(
                "order-svc",
                &tonic::Status::not_found("order T1 does not exist")
            ),
            LookupError::Refused("order-svc: order T1 does not exist".into())
        );
    }
}
