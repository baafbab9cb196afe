#!/usr/bin/env bash
# MecaPy stager image: `mecapy-stager:local`, the stage-in / stage-out containers of a job's ECS
# task, built here from this workspace (never pulled).
#
#   infra/stager-image.sh            build the image if the engine lacks this binary's image
#   infra/stager-image.sh --force    rebuild it
#
# The image holds the `stager` binary (cargo build --bin stager, stripped), the
# C libraries it links (from this machine, as ldd lists them) and the CA bundle, nothing else: no
# shell, no package manager. It runs as uid 1000. The label org.mecapy.stager-sha256 names the
# binary inside; the image is rebuilt whenever the binary changes. On AWS, push it to ECR and
# give it to the stack as StagerImage.
#
# Configuration (environment): MECAPY_RUN_DIR (log in logs/stager-image.log),
# MECAPY_STAGER_PROFILE (cargo profile, default dev). Requires a running engine.

set -Eeuo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${MECAPY_RUN_DIR:-$REPO_DIR/.run}
LOG_DIR=$RUN_DIR/logs
LOG=$LOG_DIR/stager-image.log
IMAGE=${MECAPY_STAGER_IMAGE:-mecapy-stager:local}
PROFILE=${MECAPY_STAGER_PROFILE:-dev}
LABEL=org.mecapy.stager-sha256
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

STEP_PREFIX=stager-image
# shellcheck source=infra/lib/steps.sh
. "$REPO_DIR/infra/lib/steps.sh"

force_option "${BASH_SOURCE[0]}" 15 "${1:-}"

mkdir -p "$LOG_DIR"
: >"$LOG"
docker info >/dev/null 2>&1 </dev/null ||
  fail "the Docker engine is not reachable: start it with infra/services.sh up"

STEP=build
# No -p: the workspace's features, as sam build's `cargo build --bin <function>`, so the
# dependencies compiled here are the ones the functions link (one compilation, not two).
say "cargo build --bin stager (profile $PROFILE)"
(cd "$REPO_DIR" && cargo build --quiet --profile "$PROFILE" --bin stager) >>"$LOG" 2>&1 </dev/null ||
  fail "the stager does not build"
dir=$PROFILE
[[ $PROFILE == dev ]] && dir=debug
# With CARGO_BUILD_TARGET set (the Makefile sets it), cargo puts artifacts under target/<triple>/.
BINARY=${CARGO_TARGET_DIR:-$REPO_DIR/target}/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}$dir/stager

ROOT=$(mktemp -d)
chmod 0755 "$ROOT"
trap 'rm -rf --one-file-system "$ROOT"' EXIT
install -D -m 0755 "$BINARY" "$ROOT/stager"
run strip strip "$ROOT/stager"
SHA=$(sha256sum "$ROOT/stager" | cut -d' ' -f1)

if ((FORCE == 0)) && [[ $(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null) == "$SHA" ]]; then
  say "$IMAGE is present (stager $SHA)"
  exit 0
fi

STEP=libraries
# The dynamic loader and every library the binary links, at the paths ldd resolves.
while read -r lib; do
  install -D -m 0755 "$lib" "$ROOT$lib"
done < <(ldd "$ROOT/stager" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u)
[[ -s $CA_BUNDLE ]] || fail "no CA bundle at $CA_BUNDLE (Debian's ca-certificates)"
install -D -m 0644 "$CA_BUNDLE" "$ROOT$CA_BUNDLE"
install -d -m 0755 -o 1000 -g 1000 "$ROOT/work"

STEP=import
import_tree "$ROOT" "$IMAGE" 'USER 1000:1000' 'ENTRYPOINT ["/stager"]' \
  "ENV SSL_CERT_FILE=$CA_BUNDLE" "LABEL $LABEL=$SHA"

STEP=verify
# Without its stage URL, the stager refuses with its usage exit code (2), as uid 1000 and with
# no network: the binary, its libraries and its loader are all there.
rc=0
docker run --rm --network none --read-only "$IMAGE" stage-in >>"$LOG" 2>&1 </dev/null || rc=$?
if ((rc != 2)); then
  docker image rm "$IMAGE" >>"$LOG" 2>&1 </dev/null || true
  fail "the stager image does not run (exit $rc, expected 2)"
fi
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "built $IMAGE: $((size / 1024 / 1024)) MB, stager $SHA"
