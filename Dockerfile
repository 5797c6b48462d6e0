# warren node image. Build: docker build -t warren .
# Run:   docker run -d -p 4001:4001/tcp -p 4001:4001/udp -v warren-data:/data warren start --testnet warren-testnet
# See docs/run-a-home-node.md.
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p warren-node --bin warren

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home warren
COPY --from=build /src/target/release/warren /usr/local/bin/warren
USER warren
ENV WARREN_DATA_DIR=/data
VOLUME ["/data"]
# libp2p TCP and QUIC; the control API and dashboard stay on the container's loopback.
EXPOSE 4001/tcp 4001/udp
STOPSIGNAL SIGTERM
ENTRYPOINT ["warren"]
CMD ["start", "--testnet", "warren-testnet"]
