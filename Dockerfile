# syntax=docker/dockerfile:1
#
# The `nimbus` binary in a small Debian image, with the interpreters the managed runtimes
# need (python3, node). One image for every service: the command picks the service
# (`migrate`, `gateway`, `invoker`, `dlq`, `queue-worker`, or `dev` for all in one).
#
#   docker build -t ghcr.io/nimbus/nimbus:latest .
#   docker run --rm ghcr.io/nimbus/nimbus:latest --help
#
# RUST_VERSION must match rust-toolchain.toml (scripts/validate-deploy checks it). The
# builder and the runtime stage use the same Debian release, so the binary's glibc matches.

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=trixie

# ---------------------------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
WORKDIR /src
# The image's toolchain is the pinned one; rust-toolchain.toml is left out of the context
# (.dockerignore) so rustup does not try to download the extra components it lists.
COPY . .
# BuildKit cache mounts keep the crates.io downloads and the compiled dependencies between
# builds, so a change to Nimbus's own code rebuilds only Nimbus. The binary is copied out
# of the cache mount, which is not part of the image.
RUN --mount=type=cache,id=nimbus-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=nimbus-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=nimbus-target,target=/src/target \
    cargo build --release --locked -p nimbus-cli \
    && install -D -m 0755 target/release/nimbus /out/nimbus

# ---------------------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# python3 and nodejs: interpreters for the python3.x and nodejs*.x runtimes (the invoker
# starts them; the other services never do, but one image serves all). tini is PID 1: it
# forwards SIGTERM to nimbus and reaps any orphaned function process.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        ca-certificates python3 nodejs tini \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 nimbus \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/nimbus --no-create-home \
        --shell /usr/sbin/nologin nimbus \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/nimbus
COPY --from=builder /out/nimbus /usr/local/bin/nimbus

ENV NIMBUS_DATA_DIR=/var/lib/nimbus \
    NIMBUS_LISTEN=0.0.0.0:9000 \
    NIMBUS_INVOKER_LISTEN=0.0.0.0:9100 \
    NIMBUS_DLQ_LISTEN=0.0.0.0:9200 \
    NIMBUS_PYTHON=python3 \
    NIMBUS_NODE=node
# 9000 gateway HTTP API, 9100 invoker gRPC, 9200 DLQ gRPC, 9090 admin (/healthz, /readyz)
# when NIMBUS_ADMIN_LISTEN is set.
EXPOSE 9000 9100 9200 9090
WORKDIR /var/lib/nimbus
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "nimbus"]
CMD ["--help"]
