#!/usr/bin/env bash
# Best-effort install of the Debian packages lmscale can use:
#   text corpora: bible-kjv-text sword-text-web jargon-text dict-gcide vim-runtime
#   browser for the report test: chromium chromium-driver
# Needs root and apt-get; otherwise it prints what to install and carries on
# (the tests that need these skip with the package name).
set -u
PKGS="bible-kjv-text sword-text-web jargon-text dict-gcide vim-runtime chromium chromium-driver"
missing=""
for p in $PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "lmscale: optional Debian packages not installed:$missing (apt-get install them for more corpora and the browser test)"
  exit 0
fi
echo "lmscale: installing Debian packages:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
# shellcheck disable=SC2086
apt-get install -y -qq $missing >/dev/null 2>&1 || echo "lmscale: apt-get install failed for some of:$missing (continuing)"
exit 0
