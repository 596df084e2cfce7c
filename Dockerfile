# One image for both binaries: the operator Deployment runs `redis-operator run`, and the data
# pods run `redis-instance-manager` as their sidecar (values: operator.instanceManagerImage).
# Not built on the project's own machines (no container engine there); `e2e/kind/run.sh` builds it.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p redis-operator -p redis-instance-manager

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/redis-operator /usr/local/bin/redis-operator
COPY --from=build /src/target/release/redis-instance-manager /usr/local/bin/redis-instance-manager
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/redis-operator"]
