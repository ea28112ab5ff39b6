# chatload image: built on debian:12-slim, run on debian:12-slim with only the
# runtime libraries. Build from the repository root:
#   docker build -f docker/chatload.Dockerfile --build-arg GIT_SHA=$(git rev-parse --short HEAD) \
#       -t rainbow/chatload:$(git rev-parse --short HEAD) .
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
RUN make -j"$(nproc)" VERSION="$GIT_SHA" BUILD=build build/chatload

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libuv1 libexpat1 libssl3 libidn12 libjansson4 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --system --no-create-home --shell /usr/sbin/nologin chatload
COPY --from=build /src/build/chatload /usr/local/bin/chatload
ARG GIT_SHA=unknown
LABEL org.opencontainers.image.revision=$GIT_SHA

USER 10001

ENTRYPOINT ["/usr/local/bin/chatload"]
