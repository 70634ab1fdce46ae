//! Compiles `proto/ticket/**.proto` with `protox` (pure Rust, no `protoc` needed) and keeps the
//! encoded descriptor set for gRPC server reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "ticket/stock/v1/stock.proto",
    "ticket/order/v1/order.proto",
    "ticket/saga/v1/messages.proto",
    "ticket/saga/v1/saga.proto",
    "ticket/notify/v1/notify.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = protox::compile(PROTOS, ["."])?;
    let encoded = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out_dir.join("ticket_descriptor.bin"), &encoded)?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
