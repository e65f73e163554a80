# local-broker as a container: Kinesis Data Streams and DynamoDB lease tables on port 4567.
#
#   docker build -t kcl-rs/local-broker .
#   docker run --rm -p 127.0.0.1:4567:4567 kcl-rs/local-broker
#
# Two stages: the build stage has the Rust toolchain; the final image is distroless (glibc and
# CA certificates, no shell), about 30 MB, running as an unprivileged user. Health: GET /health;
# status page: GET /; Prometheus: GET /metrics — all on the same port.

FROM rust:1.95-slim-bookworm AS build
# aws-lc-rs (TLS for --tls) builds C code.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang perl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p local-broker \
    && strip target/release/local-broker

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/local-broker /usr/local/bin/local-broker
EXPOSE 4567
# Inside the container the broker must listen on every interface for `-p` to reach it; publish
# the port on the host's loopback (`-p 127.0.0.1:4567:4567`) to keep it private.
ENTRYPOINT ["/usr/local/bin/local-broker"]
CMD ["--host", "0.0.0.0", "--port", "4567"]
