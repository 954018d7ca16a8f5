# For those who have a Docker engine. Not exercised by this repository's tests
# or CI: `make image` builds the image they check, with Go alone. This file
# uses the same build flags and gives the same contents (the static binary
# alone, on no base, user 65532, entrypoint the binary), though not the same
# digest. Multi-platform:
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=v0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t IMAGE .
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=unknown
RUN COMMIT="$(echo "$REVISION" | cut -c1-12)" && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOAMD64=v1 GOARM64=v8.0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/kpo-reaper/kpo-reaper/internal/buildinfo.Version=${VERSION} -X github.com/kpo-reaper/kpo-reaper/internal/buildinfo.Commit=${COMMIT}" \
      -o /kpo-reaper ./cmd/kpo-reaper

# No base image: the binary carries its CA roots (golang.org/x/crypto/x509roots/fallback).
FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.source="https://github.com/kpo-reaper/kpo-reaper" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build --chmod=0755 /kpo-reaper /kpo-reaper
USER 65532:65532
ENTRYPOINT ["/kpo-reaper"]
CMD ["run"]
