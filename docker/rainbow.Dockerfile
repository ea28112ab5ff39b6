# rainbow image: built on debian:12-slim, run on debian:12-slim with only the
# runtime libraries. Build from the repository root:
#   docker build -f docker/rainbow.Dockerfile --build-arg GIT_SHA=$(git rev-parse --short HEAD) \
#       -t rainbow/rainbow:$(git rev-parse --short HEAD) .
# GIT_SHA is baked in as the version label (make VERSION=...).
FROM debian:12-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config \
      libuv1-dev libexpat1-dev libssl-dev libcurl4-openssl-dev libstrophe-dev \
      libjansson-dev libyaml-dev libidn-dev libmicrohttpd-dev libcmocka-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG GIT_SHA=unknown
RUN make -j"$(nproc)" VERSION="$GIT_SHA" BUILD=build build/rainbow

FROM debian:12-slim
# rainbow keeps its timeline and history in a state dir: /var/lib/rainbow,
# owned by the user it runs as (uid 10001). The in-cluster Job mounts an
# emptyDir there (the root filesystem stays read-only); the state of record
# is in the cluster (annotations, the Service selector), not in this dir.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libuv1 libexpat1 libssl3 libidn12 libmicrohttpd12 libcurl4 libjansson4 libyaml-0-2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 --system rainbow \
 && useradd --uid 10001 --gid 10001 --system --no-create-home --shell /usr/sbin/nologin rainbow \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/rainbow
COPY --from=build /src/build/rainbow /usr/local/bin/rainbow
ARG GIT_SHA=unknown
LABEL org.opencontainers.image.revision=$GIT_SHA
ENV RAINBOW_STATE_DIR=/var/lib/rainbow
WORKDIR /var/lib/rainbow
USER 10001:10001

ENTRYPOINT ["/usr/local/bin/rainbow"]
