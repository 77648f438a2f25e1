# `make test-docker`'s stand-in for the official python:3.11-slim-bookworm image (which cannot
# be pulled here): Debian 12's Python 3.11 with its venv module, on the debootstrapped base.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# The base carries the host's CA bundle (builds reach PyPI the way the host does); Debian's
# ca-certificates, pulled in by python3, would rewrite it: keep the host's.
# Versions: those of Debian 12 and its security updates.
# hadolint ignore=DL3008
RUN cp /etc/ssl/certs/ca-certificates.crt /tmp/host-ca.crt \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && ln -s python3 /usr/bin/python \
    && mv /tmp/host-ca.crt /etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
