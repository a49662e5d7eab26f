# Multi-stage build: compile with cmake available (pingora needs it), run as a non-root user on a
# slim image. The configuration is mounted from outside:
#   docker run -v $PWD/config.toml:/etc/authgate/config.toml:ro -e JWT_SECRET_KEY=... -p 8000:8000 authgate
# In a container set `admin_listen = "0.0.0.0:9091"` so orchestrator probes can reach /readyz.
FROM rust:1-bookworm AS builder
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
# Declared bench and example targets must exist for cargo to read the manifest.
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin authgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin authgate \
    && mkdir -p /etc/authgate
COPY --from=builder /src/target/release/authgate /usr/local/bin/authgate
USER authgate
EXPOSE 8000 9091
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/authgate"]
CMD ["run", "-c", "/etc/authgate/config.toml"]
