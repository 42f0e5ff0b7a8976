#!/usr/bin/env bash
# Builds the agent's image (packaging/docker/Dockerfile) from this checkout, where docker can:
# without a docker daemon it says so and exits 0, so CI runs it on every machine and builds the
# image on those that have one. Extra arguments go to `docker build` (e.g. --build-arg
# BASE_IMAGE=… TORCH=…).
#
# Environment:
#   FLOODGATE_IMAGE  the tag (default floodgate-agent:<version of package.json>)
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v docker >/dev/null 2>&1; then
  echo "packaging/docker/build.sh: no docker here: the agent image is not built (the Dockerfile is still linted by npm test)"
  exit 0
fi
if ! docker info >/dev/null 2>&1; then
  echo "packaging/docker/build.sh: docker is installed but no daemon answers: the agent image is not built (the Dockerfile is still linted by npm test)"
  exit 0
fi
version=$(node -p 'require("./package.json").version')
image="${FLOODGATE_IMAGE:-floodgate-agent:${version}}"
echo "Building ${image} from packaging/docker/Dockerfile"
docker build --file packaging/docker/Dockerfile --tag "${image}" "$@" .
