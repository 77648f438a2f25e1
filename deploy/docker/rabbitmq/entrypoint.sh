#!/bin/sh
# One RabbitMQ node of a cluster formed by classic peer discovery:
#   RABBITMQ_CLUSTER_COOKIE  shared secret of the cluster's nodes (Erlang distribution), written
#     to the cookie file; not RabbitMQ's own RABBITMQ_ERLANG_COOKIE, which the node and every
#     rabbitmqctl would read from any environment that exports .env
#   RABBITMQ_CLUSTER_NODES   comma-separated node names, e.g. rabbit@rabbitmq-0,rabbit@rabbitmq-1
#     The first one is the seed: blank, it forms the cluster at once (it looks for no peer); the
#     others, started once it is up (Compose: depends_on service_healthy; Kubernetes:
#     OrderedReady), join it. A node with data rejoins its cluster whatever the list says.
#   RABBITMQ_USER, _PASSWORD, _VHOST   the application's account, created with the cluster
# Optional: RABBITMQ_NODENAME (default rabbit@<short hostname>), RABBITMQ_USE_LONGNAME=true.
set -eu
: "${RABBITMQ_CLUSTER_COOKIE:?}" "${RABBITMQ_CLUSTER_NODES:?}"
: "${RABBITMQ_USER:?}" "${RABBITMQ_PASSWORD:?}" "${RABBITMQ_VHOST:?}"

if [ "${RABBITMQ_USE_LONGNAME:-false}" = true ]; then
  self=${RABBITMQ_NODENAME:-rabbit@$(hostname -f)}
else
  self=${RABBITMQ_NODENAME:-rabbit@$(hostname -s)}
fi

umask 077
mkdir -p "$RABBITMQ_LOG_BASE"
cookie="$HOME/.erlang.cookie"
[ ! -e "$cookie" ] || chmod 600 "$cookie"
printf '%s' "$RABBITMQ_CLUSTER_COOKIE" >"$cookie"
chmod 400 "$cookie"

{
  echo "listeners.tcp.default = 5672"
  echo "loopback_users.guest = true"
  echo "default_user = $RABBITMQ_USER"
  echo "default_pass = $RABBITMQ_PASSWORD"
  echo "default_vhost = $RABBITMQ_VHOST"
  echo "default_user_tags.administrator = false"
  echo "cluster_partition_handling = pause_minority"
  echo "cluster_formation.peer_discovery_backend = classic_config"
  nodes=$(echo "$RABBITMQ_CLUSTER_NODES" | tr ',' ' ')
  [ "${nodes%% *}" != "$self" ] || nodes=$self # the seed
  i=0
  for node in $nodes; do
    i=$((i + 1))
    echo "cluster_formation.classic_config.nodes.$i = $node"
  done
} >"$RABBITMQ_CONFIG_FILE"

# The secrets are in the files now; the broker's process does not need them in its environment.
unset RABBITMQ_CLUSTER_COOKIE RABBITMQ_PASSWORD
# Debian's /usr/sbin/rabbitmq-server wrapper would send the log to a file: run the real one.
exec /usr/lib/rabbitmq/bin/rabbitmq-server
