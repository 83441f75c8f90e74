#!/usr/bin/env bash
# Installs the client toolchains the client-matrix tests (tests/clients.rs) drive, into a
# cache dir outside the clone, idempotently: each part is redone only when its pinned
# requirements (or Java source) change. One file lock serializes concurrent callers
# (parallel tests, .ci/run pre-warming), so they never install into the same dir at once.
#
# usage: bootstrap.sh psql|python|node|java|all
# cache: $WATERSHED_CLIENTS_CACHE, default ~/.cache/watershed/clients
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cache="${WATERSHED_CLIENTS_CACHE:-$HOME/.cache/watershed/clients}"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

apt_install() { # packages: installed only when a tool is missing on a fresh machine
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

stamp_ok() { # stamp file, content hash
    [[ -f "$1" && "$(cat "$1")" == "$2" ]]
}

python_part() {
    local hash
    hash="$(sha256sum "$here/python/requirements.txt" | cut -d' ' -f1)"
    if ! stamp_ok "$cache/python.stamp" "$hash"; then
        python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3 python3-venv
        rm -rf "$cache/venv"
        python3 -m venv "$cache/venv"
        "$cache/venv/bin/pip" install --quiet --disable-pip-version-check \
            -r "$here/python/requirements.txt"
        echo "$hash" >"$cache/python.stamp"
    fi
}

node_part() {
    local hash
    hash="$(sha256sum "$here/node/package.json" | cut -d' ' -f1)"
    if ! stamp_ok "$cache/node.stamp" "$hash"; then
        command -v npm >/dev/null || apt_install nodejs npm
        rm -rf "$cache/node"
        mkdir -p "$cache/node"
        cp "$here/node/package.json" "$cache/node/"
        (cd "$cache/node" && npm install --no-audit --no-fund --loglevel=error)
        echo "$hash" >"$cache/node.stamp"
    fi
}

java_part() {
    local jar=/usr/share/java/postgresql.jar hash
    # pgJDBC as Debian packages it (the issue asks for exactly this driver).
    [[ -f "$jar" ]] || apt_install libpostgresql-jdbc-java
    command -v javac >/dev/null || apt_install default-jdk-headless
    hash="$(cat "$here"/java/*.java | sha256sum | cut -d' ' -f1)"
    if ! stamp_ok "$cache/java.stamp" "$hash"; then
        rm -rf "$cache/java"
        mkdir -p "$cache/java"
        javac -d "$cache/java" -cp "$jar" "$here"/java/*.java
        echo "$hash" >"$cache/java.stamp"
    fi
}

psql_part() {
    command -v psql >/dev/null || apt_install postgresql-client
}

case "${1:-all}" in
    psql) psql_part ;;
    python) python_part ;;
    node) node_part ;;
    java) java_part ;;
    all) psql_part; python_part; node_part; java_part ;;
    *) echo "usage: $0 psql|python|node|java|all" >&2; exit 2 ;;
esac
