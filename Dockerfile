# A static binary on a distroless non-root base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/kpo-reaper/kpo-reaper/internal/buildinfo.Version=${VERSION}" -o /kpo-reaper ./cmd/kpo-reaper

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /kpo-reaper /kpo-reaper
USER 65532:65532
ENTRYPOINT ["/kpo-reaper"]
CMD ["run"]
