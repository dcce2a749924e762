#!/usr/bin/env bash
# The engines the discovery and shared-store tests run against: Debian's
# dnsmasq and redis-server (the tests start their own, on free loopback
# ports). Installed here when missing and this is a root Debian machine, so
# `npm test` works on a fresh machine with only Node and npm; anywhere else a
# missing engine is said once, and those tests fail with the command to run.
set -euo pipefail
if command -v dnsmasq >/dev/null && command -v redis-server >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "resilient-proxy tests: dnsmasq and redis-server are needed (apt-get install -y dnsmasq redis-server); their tests will fail without them." >&2
  exit 0
fi
# policy-rc.d keeps the packages' own services from starting (and taking port 53 or 6379) when the image has no init.
added_policy=''
if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && added_policy=1; fi
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsmasq redis-server >/dev/null
if [ -n "$added_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
