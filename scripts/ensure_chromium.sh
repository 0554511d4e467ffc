#!/bin/sh
# The HTML report's browser test drives a real headless Chromium (Debian's `chromium` and
# `chromium-driver`). `make test` (and so .ci/run) calls this first: on a fresh machine, as root with
# apt-get, it installs them; elsewhere it says how, and the test skips with that reason.
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing chromium and chromium-driver for the HTML report's browser test ..."
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; then
        exit 0
    fi
    echo "WARNING: apt-get could not install chromium chromium-driver: the browser test will be skipped." >&2
    exit 0
fi
echo "Note: chromium and chromedriver not found (as root: apt-get install chromium chromium-driver);" \
    "the HTML report's browser test will be skipped." >&2
exit 0
