# The images of silo-operator and of the booking system's services, one build target
# each, named after its binary. The binaries are built outside the image, where cargo's
# cache lives, and only copied in, so a build never recompiles the workspace:
#
#   cargo build --release --locked -p silo-operator -p user-service -p booking-service -p payment-service
#   docker build --target silo-operator   -t silo-operator:0.1.0   .
#   docker build --target user-service    -t user-service:0.1.0    .
#   docker build --target booking-service -t booking-service:0.1.0 .
#   docker build --target payment-service -t payment-service:0.1.0 .
#
# The context is the workspace root; .dockerignore lets in the four release binaries only.
#
# The binaries link glibc and libgcc_s and nothing else (TLS is rustls: no OpenSSL), and
# read CA roots from /etc/ssl/certs. distroless/cc is exactly that: no shell, no package
# manager, no compiler. Its glibc is Debian 12's, so build on Debian 12 (or any glibc up to
# 2.36), or pass a BASE_IMAGE whose glibc is at least your build machine's; pin it by
# digest for reproducible images. tests/images/build passes a base it makes the same
# way from Debian's packages: --build-arg BASE_IMAGE=localhost/silo/runtime-base:<key>.
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12

FROM ${BASE_IMAGE} AS runtime
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd. The
# binaries stay owned by root: the process cannot rewrite them.
USER 65532:65532

FROM runtime AS silo-operator
COPY target/release/silo-operator /usr/local/bin/silo-operator
# /healthz, /readyz and /metrics.
EXPOSE 9095
ENTRYPOINT ["/usr/local/bin/silo-operator"]
CMD ["run"]

FROM runtime AS user-service
COPY target/release/user-service /usr/local/bin/user-service
# The HTTP API, /healthz, /readyz and /metrics.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/user-service"]

FROM runtime AS booking-service
COPY target/release/booking-service /usr/local/bin/booking-service
# The HTTP API, /healthz, /readyz and /metrics.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/booking-service"]

FROM runtime AS payment-service
COPY target/release/payment-service /usr/local/bin/payment-service
# The HTTP API, /healthz, /readyz and /metrics.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/payment-service"]
