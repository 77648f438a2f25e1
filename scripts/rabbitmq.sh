#!/usr/bin/env bash
# RabbitMQ from Debian: install, start, and give a vhost its own user.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

rabbitmq_start() {
  apt_install rabbitmq-server
  if has_systemd; then
    systemctl enable --now rabbitmq-server >/dev/null
  elif ! rabbitmqctl -q status >/dev/null 2>&1; then
    log "starting RabbitMQ"
    rabbitmq-server -detached
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
