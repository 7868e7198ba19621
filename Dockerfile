# syntax=docker/dockerfile:1
#
# kakigori container image: one static-ish binary on debian:bookworm-slim, running as a
# non-root user, with its order journal on a volume.
#
#   docker build -t kakigori .
#   docker run -d --name kakigori -p 8080:8080 \
#       --security-opt seccomp=deploy/docker/seccomp-io-uring.json \
#       --ulimit memlock=67108864:67108864 \
#       --cpus 2 -e KAKIGORI_CORES=2 \
#       -e KAKIGORI_STAFF_TOKEN="$(openssl rand -hex 24)" \
#       -v kakigori-data:/var/lib/kakigori \
#       kakigori
#
# io_uring and container seccomp
# ------------------------------
# The server runs on glommio, which needs the io_uring_setup, io_uring_enter and
# io_uring_register system calls. Docker's default seccomp profile allowed them from 2020
# (moby PR #39415) until Docker 25.0, whose default profile denies all three again (moby
# PR #46762, Nov 2023, following containerd PR #9320; io_uring operations are invisible to
# seccomp and io_uring has had container-escape bugs). containerd 2.0's RuntimeDefault for
# Kubernetes does the same. Under those defaults the server fails at start-up with
# "Operation not permitted" while creating its rings. Choose one:
#   * --security-opt seccomp=deploy/docker/seccomp-io-uring.json (recommended): an allow-list
#     derived from systemd's @system-service set (the one systemd/kakigori.service uses),
#     which contains the three io_uring calls; see deploy/docker/gen-seccomp-profile.sh.
#   * --security-opt seccomp=unconfined: no filter at all (simplest, least safe).
# Either way the rest of Docker's isolation (namespaces, dropped capabilities, the non-root
# user below) still applies, and it is what bounds what io_uring operations can reach.
#
# memlock: glommio refuses to start with RLIMIT_MEMLOCK below 512 KiB and pins 384 KiB of
# io_uring buffers per executor (core). A container inherits the daemon's limit (often 8 MiB,
# 64 KiB on older hosts), and the kernel counts pinned memory per user id across the host,
# so containers running as the same uid share it: pass --ulimit memlock=67108864:67108864
# (64 MiB, as the systemd unit does).
#
# Cores: with no KAKIGORI_CORES the server starts one pinned executor per CPU it may run on,
# which --cpus does not restrict (only --cpuset-cpus does): set KAKIGORI_CORES to match.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The caches keep crates.io downloads and compiled dependencies between builds; the binary is
# copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kakigori --bin kakigori \
    && install -D -m 0755 target/release/kakigori /out/kakigori

FROM debian:bookworm-slim
# A fixed uid/gid, so volume ownership stays stable across image versions.
RUN groupadd --system --gid 10001 kakigori \
    && useradd --system --uid 10001 --gid kakigori --no-create-home \
        --home-dir /var/lib/kakigori --shell /usr/sbin/nologin kakigori \
    && install -d -m 0700 -o kakigori -g kakigori /var/lib/kakigori
COPY --from=builder /out/kakigori /usr/local/bin/kakigori
ENV KAKIGORI_LISTEN=0.0.0.0:8080 \
    KAKIGORI_DATA_DIR=/var/lib/kakigori \
    KAKIGORI_LOG=info
USER 10001:10001
WORKDIR /var/lib/kakigori
VOLUME ["/var/lib/kakigori"]
EXPOSE 8080
# SIGTERM: stop accepting, close WebSockets with 1001, sync the journal, exit 0 within
# KAKIGORI_SHUTDOWN_TIMEOUT_MS (10 s); give `docker stop` more than that: docker stop -t 15.
STOPSIGNAL SIGTERM
# `kakigori healthcheck` probes /healthz at KAKIGORI_LISTEN (no curl in the image).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["kakigori", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/kakigori"]
