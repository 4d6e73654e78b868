#!/usr/bin/env bash
# Installs the Debian packages loom needs when any is missing. As root it runs
# apt-get; otherwise it prints the exact command and stops.
set -eu
pkgs="lua5.4 liblua5.4-dev lua-luv lua-cjson lua-busted lua-check libsqlite3-dev libssl-dev libhttp-parser-dev
      pkg-config gcc make python3-canonicaljson python3-signedjson python3-matrix-nio"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" != 0 ]; then
  echo "loom needs:$missing"
  echo "run as root:  apt-get update && $cmd"
  exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
$cmd
