# syntax=docker/dockerfile:1
# Build: tests run, then the single executable is compiled. Run: that executable alone, as nonroot.

FROM oven/bun:1.4 AS build
WORKDIR /app
# What the tests start (test/run.ts lists the same): openssl makes the TLS tests' certificate; chromium
# and coturn run the client page end to end with real TURN; nginx fronts a server as deploy/nginx.conf
# says; strace checks the executable against the systemd unit's system-call filter; redis-server backs
# the cluster tests.
RUN apt-get update && apt-get install -y --no-install-recommends openssl chromium coturn nginx strace redis-server && rm -rf /var/lib/apt/lists/*
COPY package.json bun.lock bunfig.toml tsconfig.json ./
RUN bun install --frozen-lockfile
COPY src ./src
COPY test ./test
COPY bench ./bench
COPY deploy ./deploy
RUN bun x tsc --noEmit && bun test --timeout 20000
RUN bun run build

FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /app/dist/switchboard /usr/local/bin/switchboard
EXPOSE 3478
# The binary is PID 1: it handles SIGTERM itself, ending streams so clients reconnect elsewhere.
ENTRYPOINT ["/usr/local/bin/switchboard"]
