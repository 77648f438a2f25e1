#!/usr/bin/env bash
# RabbitMQ from Debian: install, start, and give a vhost its own user.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RABBITMQ_CONF=/etc/rabbitmq/conf.d/10-crud-master.conf

# Where the broker listens: AMQP on loopback plus RABBITMQ_LISTEN_ADDRESSES (billing-vm: its
# private address). rabbitmqctl reaches the node through epmd and the distribution port at the
# address of this machine's name (127.0.0.1, or Debian's 127.0.1.1): when that is a loopback
# address, both listen there only. Sets RABBITMQ_RECONFIGURED=1 when something changed, so a
# running node is restarted.
rabbitmq_config() {
  local port=${RABBITMQ_PORT:-5672} listen=${RABBITMQ_LISTEN_ADDRESSES:-} n=1 addr want
  local node_address epmd_line=""
  want="# Written by crud-master's scripts/rabbitmq.sh (RABBITMQ_LISTEN_ADDRESSES in .env)."
  want+=$'\n'"listeners.tcp.$n = 127.0.0.1:$port"
  for addr in ${listen//,/ }; do
    [ "$addr" = 127.0.0.1 ] && continue
    n=$((n + 1))
    want+=$'\n'"listeners.tcp.$n = $addr:$port"
  done
  want+=$'\n'"loopback_users.guest = true"
  node_address=$(getent ahostsv4 "$(hostname)" | awk 'NR == 1 {print $1}')
  if [[ $node_address == 127.* ]]; then
    want+=$'\n'"distribution.listener.interface = $node_address"
    epmd_line="export ERL_EPMD_ADDRESS=127.0.0.1"
    [ "$node_address" = 127.0.0.1 ] || epmd_line+=",$node_address"
  fi
  RABBITMQ_RECONFIGURED=0
  if [ "$(cat "$RABBITMQ_CONF" 2>/dev/null)" != "$want" ]; then
    mkdir -p "$(dirname "$RABBITMQ_CONF")"
    printf '%s\n' "$want" >"$RABBITMQ_CONF"
    RABBITMQ_RECONFIGURED=1
  fi
  local env_file=/etc/rabbitmq/rabbitmq-env.conf
  if [ "$(grep '^export ERL_EPMD_ADDRESS=' "$env_file" 2>/dev/null)" != "$epmd_line" ]; then
    sed -i '/^export ERL_EPMD_ADDRESS=/d' "$env_file" 2>/dev/null || true
    [ -z "$epmd_line" ] || echo "$epmd_line" >>"$env_file"
    RABBITMQ_RECONFIGURED=1
  fi
}

# The node and rabbitmqctl read RABBITMQ_* variables of the environment, and the role scripts
# export .env: its RABBITMQ_ERLANG_COOKIE (containers only) would give the node a cookie that a
# later `sudo rabbitmqctl` does not know. The node keeps its own, in /var/lib/rabbitmq.
rabbitmq_start() {
  unset RABBITMQ_ERLANG_COOKIE
  apt_install rabbitmq-server
  rabbitmq_config
  if has_systemd; then
    systemctl enable --now rabbitmq-server >/dev/null
    [ "$RABBITMQ_RECONFIGURED" = 0 ] || systemctl restart rabbitmq-server
  else
    if [ "$RABBITMQ_RECONFIGURED" = 1 ] && rabbitmqctl -q status >/dev/null 2>&1; then
      log "restarting RabbitMQ with its new listeners"
      quietly rabbitmqctl -q stop
    fi
    if ! rabbitmqctl -q status >/dev/null 2>&1; then
      log "starting RabbitMQ"
      quietly without_inherited_fds rabbitmq-server -detached
    fi
  fi
  # await_startup fails at once while the freshly detached node is not registered yet: poll.
  local deadline=$((SECONDS + 120))
  until rabbitmqctl -q await_startup >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "RabbitMQ did not start within 120s"
    sleep 1
  done
}

rabbitmq_vhost() {
  local vhost=$1 user=$2 password=$3
  unset RABBITMQ_ERLANG_COOKIE
  check_identifier "$vhost"; check_identifier "$user"
  rabbitmqctl -q list_vhosts | grep -qx "$vhost" || rabbitmqctl -q add_vhost "$vhost"
  if rabbitmqctl -q list_users | awk '{print $1}' | grep -qx "$user"; then
    printf '%s' "$password" | rabbitmqctl -q change_password "$user" >/dev/null
  else
    printf '%s' "$password" | rabbitmqctl -q add_user "$user" >/dev/null
  fi
  rabbitmqctl -q set_permissions -p "$vhost" "$user" '.*' '.*' '.*' >/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  rabbitmq_start
  [ $# -eq 0 ] || rabbitmq_vhost "$@"
fi
