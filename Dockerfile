# syntax=docker/dockerfile:1
#
# One image for every mode: `--mode controller` and `--mode node` (see deploy/).
#
# Node.js: the code stays compatible with Node 20 (package.json `engines`), but Node 20 is past its
# end of life, so the image ships the maintained LTS line 22. Its binary is copied from the
# official image of the same Debian release (bookworm), so it links against the same glibc and
# libstdc++ as the runtime stage, and npm, corepack and yarn stay out of the runtime image.
# Pin NODE_IMAGE by digest for reproducible release builds.
ARG NODE_IMAGE=node:22-bookworm-slim
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY proto ./proto
COPY src ./src
COPY scripts/bundle.mjs ./scripts/
COPY bin ./bin
# Generates the gRPC types from proto/csi.proto, compiles src/ to dist/src/ and bundles the driver
# into dist/bundle/ (what bin/sharedvolume-csi runs).
RUN npm run build \
 && npm prune --omit=dev

FROM ${DEBIAN_IMAGE} AS runtime
# What the driver runs (test/deploy/dockerfile.test.ts derives this list from src/):
#   mount, umount                     mount
#   stat, chgrp, chmod                coreutils
#   mount.nfs                         nfs-common
#   mount.glusterfs (FUSE client)     glusterfs-client
#   gluster (quota CLI)               glusterfs-cli
#   git, ssh (git's GIT_SSH_COMMAND)  git, openssh-client (the populator's git source; --populator is on)
#   cp -al, cp -a                     coreutils (the populator's versions in publish: symlink)
#   rsync                             rsync (on the issue's list of tools; src/ does not run it today)
#   tar, zstd, gzip, cp               tar, zstd, gzip, coreutils (snapshot archives, restores, clones)
#   btrfs                             btrfs-progs (local roots on btrfs: subvolumes, qgroups, snapshots)
#   tini                              PID 1: forwards signals, reaps zombies of mount helpers
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      btrfs-progs \
      ca-certificates \
      coreutils \
      git \
      glusterfs-cli \
      glusterfs-client \
      gzip \
      mount \
      nfs-common \
      openssh-client \
      rsync \
      tar \
      tini \
      util-linux \
      zstd \
 && rm -rf /var/lib/apt/lists/*
# The unprivileged controller runs as 65532; git and ssh refuse a UID without a passwd entry.
RUN groupadd --system --gid 65532 sharedvolume \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin sharedvolume
COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
# package.json: the driver reads its version from it. proto/: loaded at run time by grpc.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/proto ./proto
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/bundle ./dist/bundle
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/bin ./bin
RUN printf '#!/bin/sh\nexec node /app/dist/src/cli/svctl.js "$@"\n' > /usr/local/bin/svctl \
 && chmod 0755 /usr/local/bin/svctl
ENV NODE_ENV=production
# bin/sharedvolume-csi execs node with the heap flags the driver is measured with.
ENTRYPOINT ["tini", "--", "/app/bin/sharedvolume-csi"]
