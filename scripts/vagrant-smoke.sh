#!/usr/bin/env bash
# `make vagrant-smoke` (not in CI: emulated CPUs, slow): the Vagrantfile for real on this machine.
# Installs Vagrant with the libvirt provider from Debian, starts libvirt, builds the local box
# (scripts/vagrant-box.sh, cached), then runs deploy/vagrant/smoke.py in a clean clone of HEAD:
# `vagrant up`, the audit flow through 127.0.0.1:8082, `vagrant reload billing-vm`,
# `vagrant destroy -f`. While it runs, the VMs may reach the outside on TCP 80/443 only (the
# package registries their provisioning uses); everything else they send out is dropped.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$ROOT/scripts/python.sh"
source "$ROOT/scripts/vagrant-box.sh"

export VAGRANT_DEFAULT_PROVIDER=libvirt VAGRANT_CHECKPOINT_DISABLE=1
export VAGRANT_BOX_UPDATE_CHECK_DISABLE=1 CRUD_MASTER_BOX=$BOX_NAME
export LIBVIRT_DEFAULT_URI=qemu:///system
GUARD=crud_master_vagrant
VM_SUBNETS="192.168.121.0/24, 192.168.50.0/24" # vagrant-libvirt's management network, ours

# libvirt's daemons, started by hand where systemd does not run them.
libvirt_start() {
  apt_install vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu \
    libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base rsync openssh-client
  if ! virsh -c qemu:///system version >/dev/null 2>&1; then
    log "starting virtlogd and libvirtd"
    pgrep -x virtlogd >/dev/null || virtlogd -d
    libvirtd -d
    wait_for 30 virsh -c qemu:///system version
  fi
  if ! virsh -q pool-info crud-master >/dev/null 2>&1; then
    quietly virsh pool-define-as crud-master dir --target "$CACHE/pool"
    quietly virsh pool-build crud-master
  fi
  virsh -q pool-start crud-master >/dev/null 2>&1 || true # "already active" is fine
  [[ $(virsh pool-info crud-master) == *running* ]] || die "libvirt pool crud-master not running"
}

wait_for() {
  local seconds=$1
  shift
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "$* did not succeed within ${seconds}s"
    sleep 1
  done
}

# Out of the VMs' networks: TCP 80/443 only (the registries), nothing else leaves the machine.
guard_on() {
  nft -f - <<EOF
table inet $GUARD
delete table inet $GUARD
table inet $GUARD {
  chain forward {
    type filter hook forward priority -10; policy accept;
    ip saddr { $VM_SUBNETS } ip daddr != { $VM_SUBNETS } tcp dport { 80, 443 } accept
    ip saddr { $VM_SUBNETS } ip daddr != { $VM_SUBNETS } counter drop
  }
}
EOF
}

guard_off() { nft delete table inet "$GUARD" 2>/dev/null || true; }

vagrant_smoke() {
  local started=$SECONDS clone
  require_root
  python_env
  libvirt_start
  vagrant_box
  clone=$CACHE/run
  rm -rf "$clone"
  git clone -q "$ROOT" "$clone"
  log "smoke test of $(git -C "$clone" log -1 --format='%h %s')"
  guard_on
  trap guard_off EXIT
  PYTHONPATH="$ROOT/tests/e2e" "$VENV/bin/python" "$ROOT/deploy/vagrant/smoke.py" "$clone"
  log "make vagrant-smoke: $((SECONDS - started))s in all"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  vagrant_smoke "$@"
fi
