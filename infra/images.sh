#!/usr/bin/env bash
# MecaPy compute image: builds `mecapy-python:bookworm` on this machine (never pulled).
#
#   infra/images.sh            build the image if the engine lacks it (or has an older version)
#   infra/images.sh --force    rebuild the image from the cached rootfs tarball
#   infra/images.sh --rebuild  rebuild everything, the rootfs tarball included
#
# The image is a Debian bookworm minbase rootfs made with debootstrap, with python3 and numpy
# (and scipy unless MECAPY_IMAGE_SCIPY=0), a non-root user `mecapy` (uid/gid 1000, home /work),
# imported with `docker import`. Bump IMAGE_VERSION when the recipe changes: the label
# org.mecapy.image-version makes the next run rebuild.
#
# Configuration (environment):
#   MECAPY_HOME           shared install dir (default /var/lib/mecapy); rootfs under images/
#   MECAPY_RUN_DIR        runtime files (default <repo>/.run); log in logs/images.log
#   MECAPY_DEBIAN_MIRROR  Debian mirror for debootstrap (default: the host's apt source)
#   MECAPY_IMAGE_SCIPY    1 (default) to include python3-scipy, 0 to leave it out
# Runs as root, non-interactively, on Debian 12. Requires a running engine (infra/services.sh up).

set -Eeuo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${MECAPY_RUN_DIR:-$REPO_DIR/.run}
MECAPY_HOME=${MECAPY_HOME:-/var/lib/mecapy}
LOG_DIR=$RUN_DIR/logs
LOG=$LOG_DIR/images.log

IMAGE=mecapy-python:bookworm
IMAGE_VERSION=1
SUITE=bookworm
SCIPY=${MECAPY_IMAGE_SCIPY:-1}
PACKAGES=python3-minimal,python3-numpy
VARIANT=numpy
if [[ $SCIPY == 1 ]]; then
  PACKAGES=$PACKAGES,python3-scipy
  VARIANT=numpy-scipy
fi
IMAGES_DIR=$MECAPY_HOME/images
ROOTFS_TAR=$IMAGES_DIR/mecapy-python-$SUITE-v$IMAGE_VERSION-$VARIANT.tar
BUILD_DIR=$IMAGES_DIR/.build-$SUITE-v$IMAGE_VERSION-$VARIANT
LABEL=org.mecapy.image-version
PACKAGES_LABEL=org.mecapy.image-packages

# Build-time-only packages that python3-scipy's dependency on python3-pythran pulls in.
BUILD_ONLY=(
  python3-pythran python3-beniget python3-gast python3-ply libxsimd-dev
  libboost-dev libboost1.74-dev g++ g++-12 gcc gcc-12 cpp cpp-12 libstdc++-12-dev libgcc-12-dev
  libc6-dev libc-dev-bin linux-libc-dev libcrypt-dev libnsl-dev libtirpc-dev rpcsvc-proto
  binutils binutils-x86-64-linux-gnu binutils-common libbinutils libctf0 libctf-nobfd0
  libgprofng0 libjansson4 libasan8 libtsan2 liblsan0 libubsan1 libitm1 libcc1-0 libisl23
  libmpc3 libmpfr6 python3-all python3-all-dev libpython3-all-dev python3-dev python3.11-dev
  libpython3-dev libpython3.11-dev libexpat1-dev zlib1g-dev libopenblas-dev
  libopenblas-pthread-dev libjs-sphinxdoc libjs-jquery libjs-underscore
)

export DEBIAN_FRONTEND=noninteractive

FORCE_IMAGE=0
FORCE_ROOTFS=0
case ${1:-} in
  "") ;;
  --force) FORCE_IMAGE=1 ;;
  --rebuild) FORCE_IMAGE=1 FORCE_ROOTFS=1 ;;
  -h | --help)
    sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    printf 'usage: %s [--force|--rebuild]\n' "$0" >&2
    exit 2
    ;;
esac

# ---------------------------------------------------------------------------- helpers

STEP_PREFIX=images
# shellcheck source=infra/lib/steps.sh
. "$REPO_DIR/infra/lib/steps.sh"

# unmount_below DIR: unmount whatever debootstrap left mounted inside DIR (deepest first).
unmount_below() {
  local dir=$1 m
  [[ -d $dir ]] || return 0
  dir=$(readlink -f "$dir")
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
}

cleanup_build() {
  unmount_below "$BUILD_DIR"
  rm -rf --one-file-system "$BUILD_DIR" "$ROOTFS_TAR.tmp"
}

on_exit() {
  local rc=$?
  if ((rc != 0)) && [[ $STEP != setup ]]; then cleanup_build; fi
  return "$rc"
}
trap on_exit EXIT

# debian_mirror: the host's Debian archive URL for $SUITE (deb822 or one-line sources).
debian_mirror() {
  if [[ -n ${MECAPY_DEBIAN_MIRROR:-} ]]; then
    printf '%s' "$MECAPY_DEBIAN_MIRROR"
    return 0
  fi
  local f url
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    # First stanza whose Suites include the plain suite and whose URI is not the security archive.
    url=$(awk -v s="$SUITE" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uri = ""; ok = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
          if ($i ~ /^Suites:/) { n = split($i, b, /[ \t]+/); for (j = 2; j <= n; j++) if (b[j] == s) ok = 1 }
        }
        if (ok && uri != "" && uri !~ /security/) { print uri; exit }
      }' "$f")
    if [[ -n $url ]]; then
      printf '%s' "$url"
      return 0
    fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    url=$(awk -v s="$SUITE" '$1 == "deb" && $3 == s && $2 !~ /security/ { print $2; exit }' "$f")
    if [[ -n $url ]]; then
      printf '%s' "$url"
      return 0
    fi
  done
  return 1
}

image_label() {
  docker image inspect -f "{{ index .Config.Labels \"$1\" }}" "$IMAGE" 2>/dev/null || true
}
image_version() { image_label "$LABEL"; }

verify_image() {
  STEP=verify
  local out
  if ! out=$(docker run --rm --network none --user 1000:1000 "$IMAGE" \
    python3 -c 'import numpy; print(numpy.__version__)' 2>&1 </dev/null); then
    printf '%s\n' "$out" >>"$LOG"
    fail "the image does not run python3 with numpy: $out"
  fi
  say "verified: python3 imports numpy $out as uid 1000 with --network none"
}

print_image() {
  local id size
  id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
  size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
  say "$IMAGE id $id size $((size / 1024 / 1024)) MB ($size bytes), version $(image_version)"
}

# ---------------------------------------------------------------------------- main

[[ $(id -u) == 0 ]] || {
  printf '[images] ERROR: must run as root (debootstrap and chroot need it)\n' >&2
  exit 1
}
mkdir -p "$LOG_DIR" "$IMAGES_DIR"
# One build at a time per machine (several clones share MECAPY_HOME).
exec 9>"$IMAGES_DIR/.lock"
flock 9
: >"$LOG"
docker info >/dev/null 2>&1 </dev/null ||
  fail "the Docker engine is not reachable: start it with infra/services.sh up"

if ((FORCE_IMAGE == 0)) && [[ $(image_version) == "$IMAGE_VERSION" &&
  $(image_label "$PACKAGES_LABEL") == "$PACKAGES" ]]; then
  say "$IMAGE is present (version $IMAGE_VERSION, $PACKAGES)"
  print_image
  verify_image
  exit 0
fi

START=$SECONDS
if ((FORCE_ROOTFS)); then rm -f "$ROOTFS_TAR"; fi

if [[ -s $ROOTFS_TAR ]]; then
  say "reusing rootfs tarball $ROOTFS_TAR"
else
  if ! command -v debootstrap >/dev/null 2>&1; then
    say "installing debootstrap"
    if ! apt-cache show debootstrap >/dev/null 2>&1 </dev/null; then
      run apt-update apt-get -o DPkg::Lock::Timeout=600 update -qq
    fi
    run install-debootstrap apt-get -o DPkg::Lock::Timeout=600 install -y -qq debootstrap
  fi

  STEP=mirror
  MIRROR=$(debian_mirror) ||
    fail "no Debian mirror for $SUITE found in /etc/apt/sources*: set MECAPY_DEBIAN_MIRROR"

  cleanup_build
  mkdir -p "$BUILD_DIR"
  say "debootstrap $SUITE ($PACKAGES) from $MIRROR: a few minutes"
  t0=$SECONDS
  run debootstrap debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$BUILD_DIR" "$MIRROR"
  say "debootstrap done ($((SECONDS - t0)) s)"
  unmount_below "$BUILD_DIR"

  # python3-scipy depends on python3-pythran, which drags in compilers, boost and -dev packages
  # (about 450 MB) that only matter when building extensions. Jobs never compile: purge them.
  # dpkg is told to ignore the now-unmet dependency; the image never runs apt.
  STEP="purge build tools"
  purge=()
  for p in "${BUILD_ONLY[@]}"; do
    # shellcheck disable=SC2016 # ${Status} is dpkg-query's format, not a shell expansion.
    if chroot "$BUILD_DIR" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
      purge+=("$p")
    fi
  done
  if ((${#purge[@]})); then
    run purge-build-tools chroot "$BUILD_DIR" dpkg --purge --force-depends "${purge[@]}"
  fi
  find "$BUILD_DIR/usr/lib/gcc" -depth -mindepth 1 -empty -delete 2>/dev/null || true

  STEP=user
  if ! grep -q '^mecapy:' "$BUILD_DIR/etc/passwd"; then
    run user-group groupadd --root "$BUILD_DIR" --gid 1000 mecapy
    run user-add useradd --root "$BUILD_DIR" --uid 1000 --gid 1000 --home-dir /work \
      --no-create-home --shell /usr/sbin/nologin mecapy
  fi
  install -d -m 0755 -o 1000 -g 1000 "$BUILD_DIR/work" || fail "cannot create /work"

  STEP=slim
  rm -rf --one-file-system \
    "$BUILD_DIR"/var/cache/apt/* "$BUILD_DIR"/var/lib/apt/lists/* \
    "$BUILD_DIR"/var/cache/debconf/*-old "$BUILD_DIR"/var/log/* \
    "$BUILD_DIR"/usr/share/doc/* "$BUILD_DIR"/usr/share/man/* "$BUILD_DIR"/usr/share/info/* \
    "$BUILD_DIR"/usr/share/locale/* "$BUILD_DIR"/usr/share/lintian "$BUILD_DIR"/tmp/* \
    "$BUILD_DIR"/debootstrap || fail "cannot remove caches and documentation"
  find "$BUILD_DIR/usr/lib/python3" -depth -type d \( -name tests \) \
    -path '*/dist-packages/*' -prune -exec rm -rf {} + 2>>"$LOG" || true

  STEP=tarball
  say "writing rootfs tarball $ROOTFS_TAR"
  run tarball tar --numeric-owner -C "$BUILD_DIR" -cf "$ROOTFS_TAR.tmp" .
  mv -f "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  cleanup_build
fi

STEP=import
say "docker import -> $IMAGE"
old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
docker import \
  --change 'USER 1000:1000' \
  --change 'WORKDIR /work' \
  --change "LABEL $LABEL=$IMAGE_VERSION" \
  --change "LABEL $PACKAGES_LABEL=$PACKAGES" \
  --change 'CMD ["python3"]' \
  "$ROOTFS_TAR" "$IMAGE" >>"$LOG" 2>&1 </dev/null || fail "docker import failed"
new_id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
if [[ -n $old_id && $old_id != "$new_id" ]]; then
  # The previous version is now untagged; remove it unless a container still uses it.
  docker image rm "$old_id" >>"$LOG" 2>&1 </dev/null || true
fi
say "built $IMAGE in $((SECONDS - START)) s"
print_image
verify_image
