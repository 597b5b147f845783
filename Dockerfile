# syntax=docker/dockerfile:1

# licensed, the license ledger service, as a small non-root image.
#
#   docker build -t licensed .
#   docker run -p 127.0.0.1:8080:8080 -v licensed-data:/data licensed
#
# Run that way it uses its embedded default: NATS with JetStream inside the
# process, files under /data, the first operator token in
# /data/operator.token. docker-compose.yml runs it against KurrentDB and an
# external NATS server instead. internal/deploy checks this file.

ARG GO_VERSION=1.26
ARG ALPINE_VERSION=3.24

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/licensed ./cmd/licensed

# Alpine rather than distroless: its busybox wget lets the image probe its
# own /healthz.
FROM alpine:${ALPINE_VERSION} AS runtime
RUN apk add --no-cache ca-certificates tzdata \
 && addgroup -S -g 10001 licensed \
 && adduser -S -D -H -u 10001 -G licensed -s /sbin/nologin licensed \
 && mkdir -p /data /auth \
 && chown licensed:licensed /data /auth \
 && chmod 0700 /data /auth
COPY --from=build /out/licensed /usr/local/bin/licensed
# HTTP on every interface of the container; the embedded NATS server (used
# when LICENSED_NATS_URL is empty) stays on the container's loopback unless
# LICENSED_NATS_LISTEN says otherwise. It requires authentication either
# way: the nkey seeds are in /data (licensed.nk, downstream.nk). /auth is
# where `licensed nats-auth /auth` writes the seeds for an external NATS
# server (docker-compose.yml): a named volume mounted there starts with
# this owner and mode.
ENV LICENSED_DATA_DIR=/data \
    LICENSED_HTTP_ADDR=0.0.0.0:8080 \
    LICENSED_LOG_FORMAT=json
# A named volume mounted here starts with this directory's owner and mode.
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/licensed"]
