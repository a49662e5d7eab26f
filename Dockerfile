# The authgate image: the release binary on Debian bookworm-slim, run as the non-root user
# 10001, with one writable directory, the volume /var/lib/authgate (the SQLite file and the
# cut-off spool; AUTHGATE_DATA_DIR points there). The root filesystem can be read-only.
#
#   docker build -t authgate .
#   docker run --read-only -v authgate-data:/var/lib/authgate \
#     -v $PWD/config.toml:/etc/authgate/config.toml:ro -e JWT_SECRET_KEY=... \
#     -p 8000:8000 --stop-timeout 15 authgate
#
# Stopping: SIGTERM starts the drain; /readyz answers 503 and in-flight requests have
# server.grace_period_seconds (default 10) to finish. Give the runtime more than that before it
# kills (`--stop-timeout 15`, compose's `stop_grace_period: 15s`, Kubernetes'
# terminationGracePeriodSeconds), or lower the grace period.
#
# The admin listener (/readyz, /metrics, operator actions) stays on 127.0.0.1:9091 unless the
# config says otherwise; the HEALTHCHECK below runs inside the container and reaches it there.
# Expose it (admin_listen = "0.0.0.0:9091") only to your monitoring network, with admin tokens
# configured for the operator actions (README, "Deploying").
#
# Stages: `runtime-base` (the runtime, no binary), `prebuilt` (a binary built on the host, for
# CI: `--target prebuilt` with a build context holding dist/authgate; see scripts/container-image),
# `builder` (the release build) and the final, default stage (the builder's binary).

FROM debian:bookworm-slim AS runtime-base
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && useradd --uid 10001 --user-group --home-dir /var/lib/authgate --no-create-home \
       --shell /usr/sbin/nologin authgate \
    && mkdir -p /etc/authgate /var/lib/authgate \
    && chown authgate:authgate /var/lib/authgate \
    && chmod 0700 /var/lib/authgate
ENV AUTHGATE_DATA_DIR=/var/lib/authgate
WORKDIR /var/lib/authgate
VOLUME ["/var/lib/authgate"]
# Numeric, so Kubernetes' runAsNonRoot can tell it is not root.
USER 10001:10001
EXPOSE 8000 9091
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/authgate", "healthcheck", "-c", "/etc/authgate/config.toml"]
ENTRYPOINT ["/usr/local/bin/authgate"]
CMD ["run", "-c", "/etc/authgate/config.toml"]

# A binary built on the host (Debian bookworm, the same glibc): what CI tests, because a release
# build inside a container takes over 20 minutes on two cores.
FROM runtime-base AS prebuilt
COPY dist/authgate /usr/local/bin/authgate

FROM rust:1-bookworm AS builder
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
# Declared bench, example and test targets must exist for cargo to read the manifest.
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
# The lean build: without the `dev` feature, no fake provider, test key or demo is compiled in.
RUN cargo build --release --locked --no-default-features --bin authgate

FROM runtime-base
COPY --from=builder /src/target/release/authgate /usr/local/bin/authgate
