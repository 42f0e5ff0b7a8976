#!/usr/bin/env bash
# The system packages the test suite needs, in one place: `npm test` runs this first (its
# "pretest" script) and .ci/run calls it on a clean machine. It checks what is missing and
# installs it with apt-get, as root directly or through passwordless sudo. Where it cannot
# (not root and no passwordless sudo, or no apt-get), it stops at once and prints the one
# command to run. When nothing is missing it prints nothing and takes a few tens of ms.
#
# Environment:
#   FLOODGATE_SETUP_PYTHON  the interpreter the Python runner's tests use (default
#                           /usr/bin/python3, as `npm run test:python` does)
#   FLOODGATE_CHROMIUM      the Chromium the dashboard's browser test drives (default: chromium on the PATH)
#   PATH                    where apt-get, sudo and the checked programs are looked up
set -euo pipefail

PYTHON="${FLOODGATE_SETUP_PYTHON:-/usr/bin/python3}"
MISSING=()

# need "<Debian packages>" <command that succeeds when they are present>
need() {
  local packages=$1
  shift
  if ! "$@" >/dev/null 2>&1; then
    # shellcheck disable=SC2206 # the package list is split on spaces on purpose
    MISSING+=($packages)
  fi
}

# Python modules are looked up, not imported: importing torch alone takes seconds.
has_python_modules() {
  "$PYTHON" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in sys.argv[1:]))' "$@"
}

# The PyTorch runner's tests (npm run test:python) run on the CPU with Debian's PyTorch.
need "python3-torch python3-msgpack python3-numpy" has_python_modules torch msgpack numpy
# The agent's MP4 encoder test runs against the real binary.
need ffmpeg command -v ffmpeg
# The packaging checks (packaging/packaging.test.ts): shell scripts and the systemd unit.
need shellcheck command -v shellcheck
need systemd command -v systemd-analyze
# The dashboard's browser test drives Debian's Chromium through playwright-core.
need chromium command -v "${FLOODGATE_CHROMIUM:-chromium}"

[ "${#MISSING[@]}" -eq 0 ] && exit 0

# The one command a person would run: with sudo unless this is root already.
S=""
[ "$EUID" -eq 0 ] || S="sudo "
COMMAND="${S}apt-get update && ${S}apt-get install -y --no-install-recommends ${MISSING[*]}"
cannot() {
  {
    echo "The test suite needs system packages that are missing: ${MISSING[*]}"
    echo "$1 Install them with this command, then run npm test again:"
    echo
    echo "  $COMMAND"
  } >&2
  exit 1
}

command -v apt-get >/dev/null 2>&1 || cannot "This machine has no apt-get (the packages are Debian's)."
as_root() { "$@"; }
if [ "$EUID" -ne 0 ]; then
  # -n: never ask for a password; a prompt would hang a CI job.
  if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true >/dev/null 2>&1; then
    cannot "Installing them needs root, and sudo here is absent or asks for a password."
  fi
  as_root() { sudo -n "$@"; }
fi
echo "Installing the system packages the test suite needs: ${MISSING[*]}" >&2
as_root apt-get update || cannot "apt-get update failed."
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${MISSING[@]}" ||
  cannot "apt-get install failed."
