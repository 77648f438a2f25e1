#!/usr/bin/env bash
# Host firewall of a back-end VM (nftables from Debian): when FIREWALL_GATEWAY_ADDRESS is set,
# the role's ports accept connections from that address (gateway-vm) alone; everything else
# coming in is refused, apart from SSH, loopback, ping and DHCP. Empty (one machine): no firewall,
# the back ends listen on loopback only.
#   firewall_apply PORT...
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FIREWALL_RULES=/etc/nftables.d/crud-master.nft

firewall_apply() {
  local gateway=${FIREWALL_GATEWAY_ADDRESS:-} ports
  [ -n "$gateway" ] || return 0
  apt_install nftables
  ports=$(IFS=,; echo "$*")
  mkdir -p "$(dirname "$FIREWALL_RULES")"
  cat >"$FIREWALL_RULES" <<NFT
# Written by crud-master's scripts/firewall.sh (FIREWALL_GATEWAY_ADDRESS in .env).
table inet crud_master
delete table inet crud_master
table inet crud_master {
  chain input {
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iif lo accept
    meta l4proto { icmp, icmpv6 } accept
    tcp dport 22 accept
    udp dport 68 accept
    ip saddr $gateway tcp dport { $ports } accept
    meta l4proto tcp reject with tcp reset
    reject
  }
}
NFT
  nft -f "$FIREWALL_RULES"
  if has_systemd; then
    grep -qF "include \"$FIREWALL_RULES\"" /etc/nftables.conf ||
      echo "include \"$FIREWALL_RULES\"" >>/etc/nftables.conf
    systemctl enable nftables >/dev/null 2>&1
  fi
  log "firewall: ports $ports accept $gateway only"
}
