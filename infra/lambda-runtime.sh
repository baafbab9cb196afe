#!/usr/bin/env bash
# Lambda functions inside LocalStack, offline: the two pieces LocalStack would download.
#
#   infra/lambda-runtime.sh            build and install what is missing or out of date (quick when done)
#   infra/lambda-runtime.sh --force    rebuild the image and reinstall the init
#
# 1. The init (infra/lambda-init, `cargo build --release -p mecapy-lambda-init`): installed where
#    LocalStack looks for its lambda-runtime-init package (LocalStack itself is asked where), so
#    that it copies it into each function container as /var/rapid/init instead of downloading it.
# 2. The provided.al2023 runtime image: the host's glibc, libgcc_s, libstdc++ and zlib (the
#    functions are built on this host and linked against them), busybox (static) for a shell,
#    the sandbox user sbx_user1051 (993:990). Imported with `docker import`, tagged
#    $MECAPY_LAMBDA_RUNTIME_IMAGE (default localhost:5000/mecapy/provided:al2023) and pushed to
#    the local registry that LocalStack pulls it from (LAMBDA_RUNTIME_IMAGE_MAPPING, see
#    infra/services.sh). Rebuilt when one of its inputs changes (label org.mecapy.image-inputs).
#
# Requires `infra/services.sh up` first (Docker engine, registry, LocalStack's venv). Runs as
# root, non-interactively, on Debian 12. Log: $MECAPY_RUN_DIR/logs/lambda-runtime.log.

set -Eeuo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
set -a
# shellcheck disable=SC1091
. "$REPO_DIR/infra/local.env"
set +a
RUN_DIR=${MECAPY_RUN_DIR:-$REPO_DIR/.run}
MECAPY_HOME=${MECAPY_HOME:-/var/lib/mecapy}
LOG_DIR=$RUN_DIR/logs
LOG=$LOG_DIR/lambda-runtime.log
export PATH=$HOME/.cargo/bin:$PATH DEBIAN_FRONTEND=noninteractive

IMAGE=${MECAPY_LAMBDA_RUNTIME_IMAGE:-localhost:5000/mecapy/provided:al2023}
REGISTRY_URL=http://${MECAPY_REGISTRY_ADDR:-127.0.0.1:5000}
# Bump when the recipe below changes.
RECIPE_VERSION=1
LIB_PACKAGES=(libc6 libgcc-s1 libstdc++6 zlib1g)
SANDBOX_USER=sbx_user1051 SANDBOX_UID=993 SANDBOX_GID=990
IMAGES_DIR=$MECAPY_HOME/images
BUILD_DIR=$IMAGES_DIR/.build-lambda-runtime
DEB_DIR=$IMAGES_DIR/debs
INPUTS_LABEL=org.mecapy.image-inputs
CARGO_TARGET=${CARGO_TARGET_DIR:-$REPO_DIR/target}
# With CARGO_BUILD_TARGET set (the Makefile sets it), cargo puts artifacts under target/<triple>/.
INIT_BIN=$CARGO_TARGET/${CARGO_BUILD_TARGET:+$CARGO_BUILD_TARGET/}release/init

STEP_PREFIX=lambda-runtime
# shellcheck source=infra/lib/steps.sh
. "$REPO_DIR/infra/lib/steps.sh"
force_option "${BASH_SOURCE[0]}" 19 "${1:-}"

[[ $(id -u) == 0 ]] || {
  printf '[lambda-runtime] ERROR: must run as root (installs into LocalStack, builds images)\n' >&2
  exit 1
}
mkdir -p "$LOG_DIR" "$IMAGES_DIR" "$DEB_DIR"
exec 9>"$IMAGES_DIR/.lambda-runtime.lock"
flock 9
: >"$LOG"
START=$SECONDS

# ---------------------------------------------------------------------------- 1. the init

STEP=init
command -v cargo >/dev/null 2>&1 || fail "cargo is not installed"
t0=$SECONDS
run cargo-build cargo build --release --quiet -p mecapy-lambda-init --manifest-path "$REPO_DIR/Cargo.toml"
[[ -x $INIT_BIN ]] || fail "cargo did not produce $INIT_BIN"
init_sum=$(sha256sum "$INIT_BIN" | cut -d' ' -f1)
say "init: built $INIT_BIN ($(($(stat -c %s "$INIT_BIN") / 1024)) KiB, $((SECONDS - t0)) s)"

# Every LocalStack venv installed by services.sh: where its lambda-runtime package lives. The
# package counts as installed when var/rapid/init exists in one of its install targets (var_libs
# is looked at first): ours replaces any file there and goes into static_libs otherwise.
STEP=init-install
shopt -s nullglob
venvs=("$MECAPY_HOME"/localstack-*/bin/python)
shopt -u nullglob
((${#venvs[@]})) || fail "no LocalStack venv under $MECAPY_HOME (run infra/services.sh up first)"
for py in "${venvs[@]}"; do
  targets=$("$py" - 2>>"$LOG" <<'PY'
import os
from localstack.packages.api import InstallTarget
from localstack.services.lambda_.packages import lambda_runtime_package

installer = lambda_runtime_package.get_installer()
for target in InstallTarget:
    marker = installer._get_install_marker_path(installer._get_install_dir(target))
    if target == InstallTarget.STATIC_LIBS or os.path.exists(marker):
        print(marker)
PY
  ) || fail "could not ask $py where LocalStack's lambda-runtime package goes"
  while IFS= read -r dest; do
    [[ -n $dest ]] || continue
    if [[ -f $dest && $(sha256sum "$dest" | cut -d' ' -f1) == "$init_sum" ]] && ((FORCE == 0)); then
      say "init: $dest is current"
      continue
    fi
    mkdir -p "$(dirname "$dest")"
    cp -f "$INIT_BIN" "$dest.tmp.$$"
    chmod 0755 "$dest.tmp.$$"
    mv -f "$dest.tmp.$$" "$dest"
    say "init: installed $dest"
  done <<<"$targets"
done

# ---------------------------------------------------------------------------- 2. the image

STEP=image
docker info >/dev/null 2>&1 </dev/null || fail "the Docker engine is not reachable: start it with infra/services.sh up"
curl -sf --max-time 5 -o /dev/null "$REGISTRY_URL/v2/" ||
  fail "the registry at $REGISTRY_URL is not reachable: start it with infra/services.sh up registry"

# The library files to copy: the packages' shared objects (not glibc's gconv modules, not docs).
lib_files() {
  dpkg -L "${LIB_PACKAGES[@]}" 2>/dev/null |
    grep -E '^/(usr/)?lib(64|32|x32)?/.*\.so(\.[0-9.]+)?$' | grep -v '/gconv/' | sort -u |
    while IFS= read -r f; do [[ -e $f || -L $f ]] && printf '%s\n' "$f"; done
}

# busybox-static, from the Debian archive, unpacked (not installed: it conflicts with busybox).
busybox_deb() {
  local deb
  deb=$(compgen -G "$DEB_DIR/busybox-static_*.deb" | sort | tail -n1 || true)
  if [[ -z $deb ]]; then
    if ! apt-cache show busybox-static >/dev/null 2>&1 </dev/null; then
      run apt-update apt-get -o DPkg::Lock::Timeout=600 update -qq
    fi
    (cd "$DEB_DIR" && apt-get -o APT::Sandbox::User=root download busybox-static) >>"$LOG" 2>&1 </dev/null ||
      fail "apt-get download busybox-static failed"
    deb=$(compgen -G "$DEB_DIR/busybox-static_*.deb" | sort | tail -n1 || true)
  fi
  [[ -n $deb ]] || fail "no busybox-static package in $DEB_DIR"
  printf '%s' "$deb"
}

STEP=inputs
mapfile -t LIBS < <(lib_files)
((${#LIBS[@]} > 3)) || fail "no shared libraries found for ${LIB_PACKAGES[*]} (dpkg -L)"
BUSYBOX_DEB=$(busybox_deb)
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
inputs=$({
  echo "recipe $RECIPE_VERSION user $SANDBOX_USER:$SANDBOX_UID:$SANDBOX_GID"
  sha256sum "${LIBS[@]}" "$BUSYBOX_DEB" 2>/dev/null
  if [[ -f $CA_BUNDLE ]]; then sha256sum "$CA_BUNDLE"; fi
  for f in "${LIBS[@]}"; do
    if [[ -L $f ]]; then echo "$f -> $(readlink "$f")"; fi
  done
} | sha256sum | cut -d' ' -f1)

image_label() { docker image inspect -f "{{ index .Config.Labels \"$INPUTS_LABEL\" }}" "$IMAGE" 2>/dev/null || true; }

# The digest the registry serves for the tag, and the one the engine pushed.
repo=${IMAGE%:*} tag=${IMAGE##*:}
registry_digest() {
  curl -sfI --max-time 5 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "$REGISTRY_URL/v2/${repo#*/}/manifests/$tag" 2>/dev/null |
    tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" { print $2 }'
}
local_digest() {
  docker image inspect -f '{{range .RepoDigests}}{{println .}}{{end}}' "$IMAGE" 2>/dev/null |
    awk -F@ -v r="$repo" '$1 == r { print $2; exit }'
}

verify_image() {
  STEP=verify
  local out
  # The init runs in the image (same glibc); the sandbox user exists; /tmp is writable.
  if ! out=$(docker run --rm --network none -v "$INIT_BIN:/var/rapid/init:ro" --user "$SANDBOX_UID:$SANDBOX_GID" \
    "$IMAGE" /bin/sh -c '/var/rapid/init --version && id -un && touch /tmp/x && echo ok' 2>&1 </dev/null); then
    printf '%s\n' "$out" >>"$LOG"
    fail "the image does not run the init as $SANDBOX_USER: $out"
  fi
  say "verified: $(echo "$out" | head -n1) runs in $IMAGE as $(echo "$out" | sed -n 2p)"
}

if ((FORCE == 0)) && [[ $(image_label) == "$inputs" ]]; then
  say "$IMAGE is current (inputs ${inputs:0:12})"
else
  STEP=rootfs
  say "building $IMAGE (${#LIBS[@]} libraries from ${LIB_PACKAGES[*]}, busybox, $SANDBOX_USER)"
  rm -rf --one-file-system "$BUILD_DIR"
  root=$BUILD_DIR/rootfs
  mkdir -p "$root"/{usr/bin,usr/sbin,usr/lib,usr/lib64,etc,var/task,var/runtime,var/rapid,opt,root,proc,sys,dev}
  # Merged /usr, as in Debian 12 and Amazon Linux 2023.
  ln -s usr/bin "$root/bin"
  ln -s usr/sbin "$root/sbin"
  ln -s usr/lib "$root/lib"
  ln -s usr/lib64 "$root/lib64"
  install -d -m 1777 "$root/tmp"
  chmod 0700 "$root/root"
  for f in "${LIBS[@]}"; do
    dest=$f
    case $f in /lib/* | /lib64/* | /lib32/* | /libx32/*) dest=/usr$f ;; esac
    mkdir -p "$root$(dirname "$dest")"
    cp -a "$f" "$root$dest" || fail "cannot copy $f"
  done
  # busybox: the shell and the usual tools, for debugging (`docker exec ... sh`).
  run unpack-busybox dpkg-deb -x "$BUSYBOX_DEB" "$BUILD_DIR/busybox"
  bb=$(compgen -G "$BUILD_DIR/busybox/*bin/busybox" | head -n1 || true)
  [[ -n $bb ]] || fail "no busybox binary in $BUSYBOX_DEB"
  install -m 0755 "$bb" "$root/usr/bin/busybox"
  for applet in $("$root/usr/bin/busybox" --list); do
    [[ -e $root/usr/bin/$applet || $applet == busybox ]] || ln -s busybox "$root/usr/bin/$applet"
  done
  if [[ -f $CA_BUNDLE ]]; then
    install -D -m 0644 "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"
    install -d "$root/etc/pki/tls/certs"
    ln -s /etc/ssl/certs/ca-certificates.crt "$root/etc/pki/tls/certs/ca-bundle.crt"
  fi
  cat >"$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/bin/sh
$SANDBOX_USER:x:$SANDBOX_UID:$SANDBOX_GID::/tmp:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
EOF
  cat >"$root/etc/group" <<EOF
root:x:0:
$SANDBOX_USER:x:$SANDBOX_GID:
nogroup:x:65534:
EOF
  printf 'root:*:19000:0:99999:7:::\n%s:*:19000:0:99999:7:::\n' "$SANDBOX_USER" >"$root/etc/shadow"
  chmod 0640 "$root/etc/shadow"
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
  printf 'NAME="MecaPy provided.al2023 stand-in"\nID=mecapy-provided\nVERSION_ID=%s\n' "$RECIPE_VERSION" >"$root/etc/os-release"

  STEP=import
  import_tree "$root" "$IMAGE" 'ENV PATH=/usr/local/bin:/usr/bin:/bin:/opt/bin' \
    'ENV LD_LIBRARY_PATH=/var/task/lib:/opt/lib' 'ENV LANG=C.UTF-8' 'WORKDIR /var/task' \
    "LABEL $INPUTS_LABEL=$inputs" "LABEL org.mecapy.image-version=$RECIPE_VERSION"
  rm -rf --one-file-system "$BUILD_DIR"
  size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
  say "built $IMAGE ($((size / 1024 / 1024)) MB)"
fi
verify_image

STEP=push
if ((FORCE == 0)) && [[ -n $(local_digest) && $(local_digest) == "$(registry_digest)" ]]; then
  say "registry has $IMAGE ($(local_digest | cut -c1-19))"
else
  run push docker push "$IMAGE"
  [[ -n $(registry_digest) ]] || fail "the registry does not serve $IMAGE after the push"
  say "pushed $IMAGE to $REGISTRY_URL ($(registry_digest | cut -c1-19))"
fi
say "done in $((SECONDS - START)) s"
