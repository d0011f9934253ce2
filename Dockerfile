# Multi-stage build of a static printbridge binary that runs as a
# non-root user. docker-compose.yml builds it as printbridge:dev.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=0.1.0-dev
# The image runs edge and worker against the brokers of docker-compose.yml
# and has no use for the embedded NATS server of `printbridge demo`, so
# it is left out: each process has about 3 MiB less resident memory
# (docs/benchmarks.md). Build with --build-arg BUILD_TAGS= to keep the demo.
ARG BUILD_TAGS=noembeddedbroker
RUN CGO_ENABLED=0 go build -trimpath -tags "${BUILD_TAGS}" \
    -ldflags="-s -w -X github.com/printbridge/printbridge/bridge/edge.Version=${VERSION}" \
    -o /out/printbridge ./cmd/printbridge

# A small Debian base keeps /bin/sh, which system hooks with shell: true
# and the compose example's virtual printer need.
FROM debian:bookworm-slim
RUN useradd --system --create-home --home-dir /var/lib/printbridge --groups dialout printbridge \
    && mkdir -p /srv/printbridge/files /etc/printbridge \
    && chown printbridge:printbridge /var/lib/printbridge
COPY --from=build /out/printbridge /usr/local/bin/printbridge
COPY --from=build /src/deploy/demo-config.yaml /etc/printbridge/demo-config.yaml
COPY --from=build /src/testdata/gcode/ /srv/printbridge/files/
USER printbridge
WORKDIR /var/lib/printbridge
VOLUME /var/lib/printbridge
# Prometheus metrics of the edge (9464) and of the worker (9465).
EXPOSE 9464 9465
ENTRYPOINT ["/usr/local/bin/printbridge"]
