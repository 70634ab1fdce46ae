# syntax=docker/dockerfile:1.7
# One image with the four services and ticketctl; the container's command picks the binary:
#   order-svc | stock-svc | orchestrator | notify-svc | ticketctl ...
# (`<service> migrate` migrates its database and exits: the manifests' migration Jobs).
# Build: docker build -t ticket-platform:dev .

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and the target directory are cache mounts: a rebuild after a source change
# compiles only what changed. The binaries are copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && cp target/release/order-svc target/release/stock-svc target/release/orchestrator \
          target/release/notify-svc target/release/ticketctl /out/

# glibc and the CA certificates, no shell, no package manager; runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# gRPC: order 50051, stock 50052, orchestrator 50053, notify 50054; admin HTTP: 9100-9103.
EXPOSE 50051 50052 50053 50054 9100 9101 9102 9103
CMD ["order-svc"]
