# Multi-stage build of a static printbridge binary that runs as a
# non-root user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/printbridge ./cmd/printbridge

# A small Debian base keeps /bin/sh, which system hooks with shell: true
# and the compose example's virtual printer need.
FROM debian:bookworm-slim
RUN useradd --system --create-home --groups dialout printbridge \
    && mkdir -p /var/lib/printbridge /srv/printbridge/files \
    && chown printbridge /var/lib/printbridge
COPY --from=build /out/printbridge /usr/local/bin/printbridge
COPY --from=build /src/deploy /etc/printbridge
COPY --from=build /src/testdata/gcode /srv/printbridge/files
USER printbridge
ENTRYPOINT ["/usr/local/bin/printbridge"]
