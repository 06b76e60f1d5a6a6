# syntax=docker/dockerfile:1
# redis-ha-exporter as a container image: built with the locked
# dependencies, run as a non-root user on a distroless base (no shell, no
# package manager). tests/dockerfile.rs checks that what this file names
# (binary, port, paths, build command) matches the code and the README.
#
# Base images are pinned by exact tag. To pin by digest as well, look it up
# with `docker buildx imagetools inspect IMAGE:TAG` and append @sha256:...

FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked
# The state directory, made here: the runtime image has no shell to make it.
RUN mkdir -p /state

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/redis-ha-exporter /usr/local/bin/redis-ha-exporter
# Failover timelines and alert delivery queues (timelines.path and
# alerts.state_dir in config/example.yaml), kept across restarts.
COPY --from=build --chown=65532:65532 /state /var/lib/redis-ha-exporter
VOLUME ["/var/lib/redis-ha-exporter"]
# The state directory a config with receivers and no alerts.state_dir gets
# (the variable systemd sets for StateDirectory=): the volume.
ENV STATE_DIRECTORY=/var/lib/redis-ha-exporter
# distroless's nonroot user, by number so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9478
# The binary checks itself (no curl in the image); with the config it finds
# the port and whether the agent serves HTTPS.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/redis-ha-exporter", "healthcheck", "--config", "/etc/redis-ha-exporter/config.yaml"]
ENTRYPOINT ["/usr/local/bin/redis-ha-exporter"]
CMD ["--config", "/etc/redis-ha-exporter/config.yaml"]
