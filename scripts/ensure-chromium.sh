#!/usr/bin/env bash
# Make sure headless Chromium is installed for the dashboard's browser test
# (tests/browser/). Debian's package; needs root (or passwordless sudo) and apt.
# Prints the browser's path on success; exits non-zero with the reason otherwise.
set -euo pipefail

for candidate in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
        echo "$candidate"
        exit 0
    fi
done

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: no apt-get on this machine; install Chromium and set CHROMIUM" >&2
    exit 2
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "ensure-chromium: not root and no passwordless sudo; run: apt-get install chromium" >&2
    exit 3
fi

export DEBIAN_FRONTEND=noninteractive
echo "ensure-chromium: installing Debian's chromium package (apt-get)" >&2
"${SUDO[@]}" apt-get update -qq >&2
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium >&2
if [ -x /usr/bin/chromium ]; then
    echo /usr/bin/chromium
    exit 0
fi
echo "ensure-chromium: apt-get finished but /usr/bin/chromium is missing" >&2
exit 4
