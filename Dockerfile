# syntax=docker/dockerfile:1
#
# Switchboard container images. Two targets:
#
#   runtime       distroless, static, non-root (uid 65532). The gateway plus the Go example
#                 providers. For providers that are static binaries.
#                   docker build --target runtime -t switchboard:dev .
#   runtime-node  Debian slim with Node 20, non-root (uid 65532). Adds the pinned npm
#                 reference servers (offline, on PATH) and npx for anything else.
#                   docker build --target runtime-node -t switchboard:dev-node .
#
# Both read /etc/switchboard/gateway.yaml and keep state in the /var/lib/switchboard volume.
# No key or secret is baked in: give the vault key at run time (SWITCHBOARD_VAULT_KEY, or a
# mounted key file named by vault.key_file). See docs/deploy.md.

# Fully qualified image names, so podman/buildah need no short-name aliases.
ARG GO_VERSION=1.26

# ---------------------------------------------------------------------------------------
FROM docker.io/library/golang:${GO_VERSION}-bookworm AS build
WORKDIR /src

# Modules first, so source edits do not invalidate the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    set -eu; \
    export CGO_ENABLED=0; \
    ldflags="-s -w -X main.version=${VERSION}"; \
    go build -trimpath -ldflags "$ldflags" -o /out/switchboard        ./cmd/switchboard; \
    go build -trimpath -ldflags "$ldflags" -o /out/switchboard-notes  ./examples/providers/notes; \
    go build -trimpath -ldflags "$ldflags" -o /out/switchboard-echo   ./examples/providers/echo; \
    /out/switchboard version; \
    mkdir -p /out/rootfs/var/lib/switchboard /out/rootfs/etc/switchboard; \
    cp deploy/gateway.yaml /out/rootfs/etc/switchboard/gateway.yaml

# ---------------------------------------------------------------------------------------
FROM docker.io/library/node:20-bookworm-slim AS npm-servers
# The reference MCP servers at the exact versions in e2e/package-lock.json: its
# dependencies only, not the test tools (dev) or the Node 22 binary (optional) beside them.
WORKDIR /opt/switchboard/mcp
COPY e2e/package.json e2e/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --omit=optional --no-audit --no-fund

# ---------------------------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
ARG VERSION=dev
LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="MCP gateway: supervised stdio providers behind one streamable-HTTP endpoint" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/switchboard-mcp/switchboard"

COPY --from=build /out/switchboard /out/switchboard-notes /out/switchboard-echo /usr/local/bin/
COPY --from=build /out/rootfs/etc/switchboard/ /etc/switchboard/
COPY --from=build --chown=65532:65532 /out/rootfs/var/lib/switchboard/ /var/lib/switchboard/

# Children inherit HOME from the gateway's allowlisted base environment; point it at the
# writable volume so nothing tries to write to the (read-only) root filesystem.
ENV HOME=/var/lib/switchboard
USER 65532:65532
WORKDIR /var/lib/switchboard
VOLUME ["/var/lib/switchboard"]
EXPOSE 8080

# distroless has no shell or curl: the binary checks its own /healthz. HEALTHCHECK is a
# Docker-format instruction; podman/buildah keep it only with --format docker.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/switchboard", "healthcheck", "--config", "/etc/switchboard/gateway.yaml"]

ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve", "--config", "/etc/switchboard/gateway.yaml"]

# ---------------------------------------------------------------------------------------
FROM docker.io/library/node:20-bookworm-slim AS runtime-node
ARG VERSION=dev
LABEL org.opencontainers.image.title="switchboard-node" \
      org.opencontainers.image.description="MCP gateway with Node 20 for npm-based MCP servers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/switchboard-mcp/switchboard"

# tini reaps zombies and forwards signals; the gateway itself also stops every provider's
# process group on SIGTERM.
RUN set -eu; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates tini; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 65532 switchboard; \
    useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/switchboard \
        --no-create-home --shell /usr/sbin/nologin switchboard

COPY --from=build /out/switchboard /out/switchboard-notes /out/switchboard-echo /usr/local/bin/
COPY --from=build /out/rootfs/etc/switchboard/ /etc/switchboard/
COPY --from=build --chown=65532:65532 /out/rootfs/var/lib/switchboard/ /var/lib/switchboard/
COPY --from=npm-servers /opt/switchboard/mcp/ /opt/switchboard/mcp/

# mcp-server-filesystem, mcp-server-memory and mcp-server-everything run offline from the
# pinned install; `npx -y <pkg>@<version>` fetches anything else into $HOME/.npm on the volume.
ENV PATH=/opt/switchboard/mcp/node_modules/.bin:$PATH \
    HOME=/var/lib/switchboard \
    NODE_ENV=production
USER 65532:65532
WORKDIR /var/lib/switchboard
VOLUME ["/var/lib/switchboard"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/switchboard", "healthcheck", "--config", "/etc/switchboard/gateway.yaml"]

ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/switchboard"]
CMD ["serve", "--config", "/etc/switchboard/gateway.yaml"]
