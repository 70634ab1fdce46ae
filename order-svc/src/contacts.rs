//! `ContactService`: where an order's buyer asked to be notified, for notify-svc when it sends.
//! The contact never travels in saga messages; this call is how it leaves order-svc, behind
//! the service token. Logs and traces of the call name the order, never the contact.

use sea_orm::DatabaseConnection;
use ticket_proto::order::v1 as pb;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::order_api::{MAX_ID_LEN, identifier};
use crate::orders;

pub struct ContactApi {
    pub db: DatabaseConnection,
    pub access: ticket_platform::auth::Access,
}

#[tonic::async_trait]
impl pb::contact_service_server::ContactService for ContactApi {
    #[tracing::instrument(skip_all, fields(order_no))]
    async fn get_contact(
        &self,
        request: Request<pb::GetContactRequest>,
    ) -> Result<Response<pb::OrderContact>, Status> {
        self.access.service(&request)?;
        let order_no = identifier("order_no", &request.into_inner().order_no, MAX_ID_LEN)?;
        tracing::Span::current().record("order_no", order_no.as_str());
        let order = orders::find(&self.db, &order_no)
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("order {order_no} does not exist")))?;
        let contact = orders::contact(&self.db, &order_no)
            .await
            .map_err(Error::from)?
            .unwrap_or_default();
        Ok(Response::new(pb::OrderContact {
            order: Some(orders::message(&order)),
            contact: Some(pb::Contact {
                email: contact.email.unwrap_or_default(),
                phone: contact.phone.unwrap_or_default(),
                push_token: contact.push_token.unwrap_or_default(),
            }),
        }))
    }
}
