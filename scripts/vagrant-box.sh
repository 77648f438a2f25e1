#!/usr/bin/env bash
# A Vagrant box for the libvirt provider, built here from Debian's packages (no box can be
# downloaded): a minimal Debian 12 with systemd, sshd, sudo, rsync and a kernel, the `vagrant`
# user with Vagrant's well-known insecure key, as a qcow2 image booted by libvirt with its kernel
# and initrd given directly (no boot loader). Built once and cached; rebuilt when the functions
# that make it change. Used by scripts/vagrant-smoke.sh.
# The box carries what the role scripts install (ROLE_PACKAGES, uv, PM2), installed in the chroot
# at native speed, as a Packer-built box would: the VMs' CPU is emulated, and unpacking Debian's
# nodejs/npm alone took 24 minutes there. `vagrant up` still runs every step of the role scripts;
# their installs find the software present.
#   scripts/vagrant-box.sh            build (if needed) and `vagrant box add` crud-master/bookworm
# CRUD_MASTER_VAGRANT_CACHE (default /var/tmp/crud-master-vagrant) holds the box, its kernel and
# initrd, Vagrant's home (VAGRANT_HOME) and the VMs' disks.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CACHE=${CRUD_MASTER_VAGRANT_CACHE:-/var/tmp/crud-master-vagrant}
BOX_NAME=crud-master/bookworm
BOX_DIR=$CACHE/box
DISK_GB=10
export VAGRANT_HOME=${VAGRANT_HOME:-$CACHE/vagrant.d} VAGRANT_CHECKPOINT_DISABLE=1

# What the role scripts install from Debian (their apt_install and node_install lines: python.sh,
# postgres.sh, rabbitmq.sh, firewall.sh, lib.sh), with the same --no-install-recommends.
ROLE_PACKAGES=(python3 python3-venv ca-certificates curl postgresql postgresql-contrib
  rabbitmq-server nftables nodejs npm)

# The box is rebuilt when what makes it changes.
box_stamp() {
  { declare -p ROLE_PACKAGES && declare -f configure_rootfs preinstall_roles chroot_release build_box; } |
    sha256sum | cut -d' ' -f1
}

box_current() {
  [ -f "$BOX_DIR/stamp" ] && [ "$(cat "$BOX_DIR/stamp")" = "$(box_stamp)" ] &&
    [[ $'\n'$(vagrant box list 2>/dev/null) == *$'\n'"$BOX_NAME "* ]]
}

# Files written into the image.
configure_rootfs() {
  local rootfs=$1 host=crud-master-box
  echo "$host" >"$rootfs/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$host" >"$rootfs/etc/hosts"
  echo '/dev/vda / ext4 defaults,errors=remount-ro 0 1' >"$rootfs/etc/fstab"
  # Each VM makes its own machine id on first boot (and so its own DHCP client id).
  : >"$rootfs/etc/machine-id"
  rm -f "$rootfs/var/lib/dbus/machine-id"
  cat >"$rootfs/etc/apt/sources.list" <<'EOF'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
EOF
  # The first interface (libvirt's management network) by DHCP; Vagrant configures the private
  # network through systemd-networkd. DNS: dnsmasq of vagrant-libvirt's management network.
  cat >"$rootfs/etc/systemd/network/10-eth0.network" <<'EOF'
[Match]
Name=eth0

[Network]
DHCP=ipv4
EOF
  echo 'nameserver 192.168.121.1' >"$rootfs/etc/resolv.conf"
  # Trust what this machine trusts (its local CAs), and say so to the tools that keep their own
  # bundle, as this machine's environment does.
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    cat >>"$rootfs/etc/environment" <<'EOF'
SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
PIP_CERT=/etc/ssl/certs/ca-certificates.crt
NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
EOF
  fi
  chroot "$rootfs" update-ca-certificates >/dev/null
  # No key is shared by the VMs made from the box: each makes its SSH host keys and its snakeoil
  # TLS pair (PostgreSQL's) on first boot.
  rm -f "$rootfs"/etc/ssh/ssh_host_*
  cat >"$rootfs/etc/systemd/system/machine-keys.service" <<'EOF'
[Unit]
Description=This machine's SSH host keys and snakeoil TLS pair (the box carries none)
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key
Before=ssh.service postgresql@15-main.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
ExecStart=/bin/sh -c 'command -v make-ssl-cert >/dev/null || exit 0; make-ssl-cert generate-default-snakeoil --force-overwrite'

[Install]
WantedBy=multi-user.target
EOF
  chroot "$rootfs" systemctl enable -q machine-keys systemd-networkd
  chroot "$rootfs" useradd -m -s /bin/bash vagrant
  install -d -m 700 -o 1000 -g 1000 "$rootfs/home/vagrant/.ssh"
  install -m 600 -o 1000 -g 1000 "$(vagrant_insecure_key)" "$rootfs/home/vagrant/.ssh/authorized_keys"
  echo 'vagrant ALL=(ALL) NOPASSWD: ALL' >"$rootfs/etc/sudoers.d/vagrant"
  chmod 440 "$rootfs/etc/sudoers.d/vagrant"
  chroot "$rootfs" apt-get clean
}

# The role scripts' software, installed the way they install it: ROLE_PACKAGES as apt_install
# does, uv as scripts/python.sh does, PM2 as scripts/pm2.sh does. No service starts in the chroot
# (policy-rc.d); the broker's Erlang cookie is left for each VM to make. uv's cache is warmed with
# the wheels of this checkout's uv.lock (a later lock only downloads what changed).
preinstall_roles() {
  local rootfs=$1
  (
    trap 'chroot_release "$rootfs"' EXIT
    mount -t proc proc "$rootfs/proc"
    mount -t sysfs sysfs "$rootfs/sys"
    mount -t tmpfs shm "$rootfs/dev/shm"
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
    chmod 755 "$rootfs/usr/sbin/policy-rc.d"
    cp "$rootfs/etc/resolv.conf" "$rootfs/etc/resolv.conf.box"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    log "the roles' packages: ${ROLE_PACKAGES[*]}"
    quietly chroot "$rootfs" apt-get update -q
    quietly chroot "$rootfs" apt-get install -y -q --no-install-recommends --download-only \
      "${ROLE_PACKAGES[@]}"
    # Installed in a network namespace of its own: PostgreSQL's postinst gives the new cluster the
    # first port it can bind, and this machine's own PostgreSQL may hold 5432.
    DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 quietly unshare --net chroot "$rootfs" \
      apt-get install -y -q --no-install-recommends "${ROLE_PACKAGES[@]}"
    grep -q '^port = 5432' "$rootfs"/etc/postgresql/*/main/postgresql.conf ||
      die "the box's PostgreSQL cluster is not on port 5432"
    # Started only where a role enables them (postgres.sh, rabbitmq.sh: `systemctl enable --now`):
    # gateway-vm runs neither, and a broker or epmd there would listen on every address.
    chroot "$rootfs" systemctl disable -q postgresql rabbitmq-server epmd.socket epmd.service
    log "uv from PyPI into /opt/uv, PM2 from npm"
    chroot "$rootfs" python3 -m venv /opt/uv
    quietly chroot "$rootfs" /opt/uv/bin/pip install -q uv
    ln -sf /opt/uv/bin/uv "$rootfs/usr/local/bin/uv"
    quietly chroot "$rootfs" npm install -g --no-fund --no-audit pm2
    log "uv's cache: the locked wheels"
    mkdir "$rootfs/tmp/crud-master"
    git -C "$ROOT" archive HEAD | tar -x -C "$rootfs/tmp/crud-master"
    quietly chroot "$rootfs" sh -c 'cd /tmp/crud-master && uv sync --locked --all-packages --quiet'
    rm -rf "$rootfs/tmp/crud-master" "$rootfs/root/.npm" "$rootfs/root/.cache/pip"
    rm -f "$rootfs/var/lib/rabbitmq/.erlang.cookie" "$rootfs/etc/ssl/private/ssl-cert-snakeoil.key" \
      "$rootfs/etc/ssl/certs/ssl-cert-snakeoil.pem"
    chroot "$rootfs" apt-get clean
  )
}

# After preinstall_roles, whatever happened: nothing of the chroot left running or mounted, the
# box's own resolv.conf, services free to start.
chroot_release() {
  local rootfs=$1 proc mount
  for proc in /proc/[0-9]*; do
    if [ "$(readlink "$proc/root" 2>/dev/null)" = "$rootfs" ]; then
      log "stopping $(tr '\0' ' ' <"$proc/cmdline"), left running in the chroot"
      kill -9 "${proc#/proc/}"
    fi
  done
  for mount in dev/shm sys proc; do
    if mountpoint -q "$rootfs/$mount"; then umount "$rootfs/$mount"; fi
  done
  if [ -f "$rootfs/etc/resolv.conf.box" ]; then mv "$rootfs/etc/resolv.conf.box" "$rootfs/etc/resolv.conf"; fi
  rm -f "$rootfs/usr/sbin/policy-rc.d"
}

vagrant_insecure_key() {
  local key
  key=$(find /usr/share/rubygems-integration /usr/lib/ruby /opt/vagrant \
    -path '*/keys/vagrant.pub' -print -quit 2>/dev/null || true)
  [ -n "$key" ] || die "Vagrant's insecure public key (keys/vagrant.pub) not found"
  echo "$key"
}

build_box() {
  local work=$CACHE/build rootfs kernel initrd
  rm -rf "$work" "$BOX_DIR"
  mkdir -p "$work" "$BOX_DIR"
  rootfs=$work/rootfs
  log "debootstrap: Debian 12 with systemd, sshd, sudo and a kernel (a few minutes)"
  quietly debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,udev,dbus,openssh-server,sudo,rsync,ca-certificates,iproute2,procps,netbase,linux-image-amd64,initramfs-tools \
    bookworm "$rootfs" http://deb.debian.org/debian
  configure_rootfs "$rootfs"
  preinstall_roles "$rootfs"
  kernel=$(find "$rootfs/boot" -name 'vmlinuz-*' | sort | tail -n1)
  initrd=$(find "$rootfs/boot" -name 'initrd.img-*' | sort | tail -n1)
  [ -n "$kernel" ] && [ -n "$initrd" ] || die "no kernel or initrd in $rootfs/boot"
  install -m 644 "$kernel" "$BOX_DIR/vmlinuz"
  install -m 644 "$initrd" "$BOX_DIR/initrd.img"
  log "qcow2 image of ${DISK_GB} GiB"
  truncate -s "${DISK_GB}G" "$work/root.raw"
  quietly mkfs.ext4 -q -L root -d "$rootfs" "$work/root.raw"
  qemu-img convert -f raw -O qcow2 "$work/root.raw" "$work/box.img"
  printf '{"provider":"libvirt","format":"qcow2","virtual_size":%d}\n' "$DISK_GB" >"$work/metadata.json"
  # The box's own Vagrantfile: boot its kernel directly, emulated CPU (KVM guests hang here), disks
# in the libvirt pool "crud-master" (scripts/vagrant-smoke.sh makes it, in $CACHE/pool).
  cat >"$work/Vagrantfile" <<EOF
Vagrant.configure("2") do |config|
  config.vm.boot_timeout = 900
  config.vm.provider :libvirt do |lv|
    lv.driver = "qemu"
    lv.kernel = "$BOX_DIR/vmlinuz"
    lv.initrd = "$BOX_DIR/initrd.img"
    lv.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
    lv.storage_pool_name = "crud-master"
  end
end
EOF
  tar -C "$work" -cf "$BOX_DIR/crud-master-bookworm.box" metadata.json Vagrantfile box.img
  rm -rf "$work"
  quietly vagrant box add --force --name "$BOX_NAME" "$BOX_DIR/crud-master-bookworm.box"
  rm -f "$BOX_DIR/crud-master-bookworm.box"
  box_stamp >"$BOX_DIR/stamp"
}

vagrant_box() {
  require_root
  apt_install debootstrap qemu-utils e2fsprogs vagrant
  mkdir -p "$CACHE"
  chmod 755 "$CACHE"
  if box_current; then
    log "box $BOX_NAME up to date ($BOX_DIR)"
  else
    # vagrant-libvirt copies a box into the pool under a name with the image's mtime: drop the old.
    local volume old
    old=$(virsh vol-list crud-master 2>/dev/null | awk '/bookworm_vagrant_box_image/ {print $1}')
    for volume in $old; do
      virsh -q vol-delete --pool crud-master "$volume"
    done
    build_box
    log "box $BOX_NAME added ($(du -sh "$VAGRANT_HOME/boxes" | cut -f1))"
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  vagrant_box "$@"
fi
