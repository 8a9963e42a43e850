#!/bin/sh
# Runs tether-registry's keychain tests against a real Secret Service: a private D-Bus session
# bus with a gnome-keyring whose "login" keyring (the default collection) is created and
# unlocked without a prompt. Everything lives in a throwaway directory; no existing keyring is
# read or written. TETHER_REQUIRE_KEYCHAIN=1 makes the tests fail, not skip, if the keychain
# does not work.
#
# Needs (Debian 12): apt-get install -y --no-install-recommends gnome-keyring dbus-daemon
# (dbus-run-session is in the dbus-daemon package; on Debian 11 and older it is in dbus).
#
# Usage, from anywhere: crates/tether-registry/tests/run-with-keyring.sh [cargo test options]
set -eu

for tool in dbus-run-session gnome-keyring-daemon cargo; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "run-with-keyring: $tool not found (apt-get install gnome-keyring dbus-daemon)" >&2
        exit 2
    fi
done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT INT TERM
mkdir -m 700 "$root/runtime" "$root/data" "$root/config"
# gnome-keyring keeps keyrings in $XDG_DATA_HOME/keyrings and its socket in $XDG_RUNTIME_DIR.
# HOME is left alone so cargo and rustup find their usual directories.
export XDG_RUNTIME_DIR="$root/runtime" XDG_DATA_HOME="$root/data" XDG_CONFIG_HOME="$root/config"
export TETHER_REQUIRE_KEYCHAIN=1

cd "$(dirname "$0")/../../.."
exec dbus-run-session -- sh -eu -c '
    # Reads the password on stdin, creates the login keyring with it and unlocks it, and
    # starts the daemon (secrets component only) on this session bus.
    printf %s "tether-ci-keyring" | gnome-keyring-daemon --unlock --components=secrets >/dev/null
    cargo test -p tether-registry --test keychain "$@" -- --nocapture
' run-with-keyring "$@"
