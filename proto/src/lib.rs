//! Generated types of every gRPC service and RocketMQ payload, one module per proto package.
#![allow(clippy::all, clippy::pedantic)]

pub mod stock {
    pub mod v1 {
        tonic::include_proto!("ticket.stock.v1");
    }
}

pub mod order {
    pub mod v1 {
        tonic::include_proto!("ticket.order.v1");
    }
}

pub mod saga {
    pub mod v1 {
        tonic::include_proto!("ticket.saga.v1");
    }
}

pub mod notify {
    pub mod v1 {
        tonic::include_proto!("ticket.notify.v1");
    }
}

/// Encoded `FileDescriptorSet` of every proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ticket_descriptor.bin"));

/// Fully qualified gRPC service names, as reflection lists them.
pub mod service_names {
    pub const CATALOG: &str = "ticket.stock.v1.CatalogService";
    pub const STOCK: &str = "ticket.stock.v1.StockService";
    pub const ORDER: &str = "ticket.order.v1.OrderService";
    pub const SAGA_ADMIN: &str = "ticket.saga.v1.SagaAdmin";
    pub const PARTICIPANT: &str = "ticket.saga.v1.Participant";
    pub const NOTIFICATION: &str = "ticket.notify.v1.NotificationService";
}
