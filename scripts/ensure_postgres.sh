#!/bin/sh
# The cache_url tests (mapper-emailverify/tests/test_cache_postgres.py) start a throwaway PostgreSQL
# server (initdb, pg_ctl: Debian's `postgresql`). `make test` calls this first: on a fresh machine,
# as root with apt-get, it installs them; elsewhere it says how, and those tests skip with that reason.
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing postgresql for the cache_url tests ..."
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null; then
        exit 0
    fi
    echo "WARNING: apt-get could not install postgresql: the cache_url tests will be skipped." >&2
    exit 0
fi
echo "Note: PostgreSQL's initdb not found (as root: apt-get install postgresql);" \
    "the cache_url tests will be skipped." >&2
exit 0
