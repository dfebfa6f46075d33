#!/usr/bin/env bash
# Installs the Debian packages the test suite runs against (real OpenSSH, PostgreSQL, haproxy,
# Samba, a Docker registry, skopeo, nginx, tinyproxy, Apache with mod_dav, Chromium). Idempotent; needs root or sudo.
set -euo pipefail
PKGS=(openssh-client openssh-server curl netcat-openbsd socat postgresql haproxy samba smbclient
      docker-registry skopeo nginx libnginx-mod-stream tinyproxy apache2-utils chromium iperf3 procps iproute2
      ssh-audit apache2)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "test dependencies: all installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "missing Debian packages: ${missing[*]} (run this script as root)" >&2
    exit 1
  fi
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Packages that start services on install: stop them, the tests start their own instances.
for svc in nginx haproxy tinyproxy smbd nmbd docker-registry postgresql apache2; do
  $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
