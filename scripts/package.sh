#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine, checks its systemd
# units, and runs `migrate` and `gateways status` as the package's user
# (README, "Install on a server").
#
#   bash scripts/package.sh            # then: target/debian/pedulicovid_*.deb
#
# Needs root (it installs the package) and installs cargo-deb when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[package] $*" >&2; }

command -v cargo-deb >/dev/null 2>&1 || {
    log "installing cargo-deb"
    cargo install --locked cargo-deb
}
# The commit for pedulicovid_build_info (build.rs also reads .git itself).
PEDULICOVID_COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
export PEDULICOVID_COMMIT
log "building the release binary and the package"
# --strip: the release profile keeps debug info for profiling; the package
# ships the binary without it (about 150 MB less).
deb="$(cargo deb --locked --strip 2>/dev/null | tail -n 1)"
[ -f "$deb" ] || { log "cargo deb produced no package"; exit 1; }
log "package: $deb"
dpkg-deb --info "$deb" | sed -n '1,/Description/p' >&2

log "installing it"
case "$deb" in /*) pkg="$deb" ;; *) pkg="./$deb" ;; esac
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$pkg" >/dev/null

log "checking what it installed"
test -x /usr/bin/pedulicovid
test -f /usr/share/pedulicovid/templates/sms/undangan_registrasi.tera
getent passwd pedulicovid >/dev/null
perm="$(stat -c '%a %U:%G' /etc/pedulicovid/pedulicovid.toml)"
[ "$perm" = "640 root:pedulicovid" ] || { log "settings file is $perm, not 640 root:pedulicovid"; exit 1; }

log "systemd-analyze verify"
systemd-analyze verify /lib/systemd/system/pedulicovid.service \
    /lib/systemd/system/pedulicovid-serve.service \
    /lib/systemd/system/pedulicovid-worker@9465.service

log "migrate and gateways status as the pedulicovid user"
install -d -o pedulicovid -g pedulicovid -m 0750 /var/lib/pedulicovid
cd /var/lib/pedulicovid
runuser -u pedulicovid -- /usr/bin/pedulicovid --config /etc/pedulicovid/pedulicovid.toml migrate
runuser -u pedulicovid -- /usr/bin/pedulicovid --config /etc/pedulicovid/pedulicovid.toml gateways status
stat -c '%a %U %n' /var/lib/pedulicovid/pedulicovid.db
log "ok: $deb"
