#!/usr/bin/env bash
# Make sure headless Chromium is installed for the dashboard's browser test (tests/browser/),
# with a font that has Chinese glyphs for the screenshots of the Chinese page. Debian's
# packages (chromium, fonts-wqy-microhei, faketime); needs root or passwordless sudo, and apt.
# Prints the browser's path on its last line on success; exits non-zero with the reason.
set -euo pipefail

find_chromium() {
    for candidate in "${CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

has_cjk_font() {
    command -v fc-list >/dev/null 2>&1 && [ -n "$(fc-list :lang=zh 2>/dev/null | head -n 1)" ]
}

browser="$(find_chromium || true)"
packages=()
[ -n "$browser" ] || packages+=(chromium)
has_cjk_font || packages+=(fonts-wqy-microhei)
# libfaketime runs the browser with a clock of its own (the dashboard's dates test).
command -v faketime >/dev/null 2>&1 || packages+=(faketime)
if [ "${#packages[@]}" -eq 0 ]; then
    echo "$browser"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: no apt-get here; install ${packages[*]} (or set CHROMIUM)" >&2
    [ -n "$browser" ] && { echo "$browser"; exit 0; }
    exit 2
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "ensure-chromium: not root and no passwordless sudo; run: apt-get install ${packages[*]}" >&2
    [ -n "$browser" ] && { echo "$browser"; exit 0; }
    exit 3
fi

export DEBIAN_FRONTEND=noninteractive
echo "ensure-chromium: installing ${packages[*]} with apt-get" >&2
if ! { "${SUDO[@]}" apt-get update -qq >&2 &&
       "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}" >&2; }; then
    echo "ensure-chromium: apt-get could not install ${packages[*]}" >&2
    [ -n "$browser" ] && { echo "$browser"; exit 0; }  # a missing font is not fatal
    exit 4
fi
browser="$(find_chromium || true)"
if [ -z "$browser" ]; then
    echo "ensure-chromium: apt-get finished but no chromium binary is there" >&2
    exit 5
fi
echo "$browser"
