#!/usr/bin/env bash
# Installs the Debian packages loom needs when any is missing. As root it runs
# apt-get; otherwise it prints the exact command and stops.
set -eu
pkgs="lua5.4 liblua5.4-dev lua-luv lua-cjson lua-busted lua-check libsqlite3-dev libssl-dev libhttp-parser-dev libvips-dev
      pkg-config gcc make python3-canonicaljson python3-signedjson python3-matrix-nio graphviz"
# Synapse 1.67, the peer of the differential specs (spec/04-differential): its runtime
# dependencies as Debian 12 packages, the wheel build tools, and openssl/curl for the
# peer script (the same list as its APT_PACKAGES)
pkgs="$pkgs python3 python3-venv python3-pip python3-poetry-core python3-twisted python3-treq
      python3-service-identity python3-openssl python3-yaml python3-pyasn1 python3-pyasn1-modules
      python3-bcrypt python3-pil python3-sortedcontainers python3-pymacaroons python3-msgpack
      python3-phonenumbers python3-prometheus-client python3-attr python3-netaddr python3-jinja2
      python3-bleach python3-typing-extensions python3-cryptography python3-ijson python3-matrix-common
      python3-packaging python3-pydantic python3-nacl python3-jsonschema python3-frozendict
      python3-unpaddedbase64 python3-idna openssl curl"
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
