#!/usr/bin/env bash
# MecaPy compute image: builds `mecapy-python:bookworm` on this machine (never pulled).
#
#   infra/images.sh            build the image if the engine lacks it (or has an older version)
#   infra/images.sh --force    rebuild the image from the cached rootfs tarball
#   infra/images.sh --rebuild  rebuild everything, the rootfs tarball included
#
# The image is a Debian bookworm minbase rootfs made with debootstrap, with python3 and numpy
# (and scipy unless MECAPY_IMAGE_SCIPY=0, matplotlib unless MECAPY_IMAGE_MATPLOTLIB=0), a
# non-root user `mecapy` (uid/gid 1000, home /work), imported with `docker import`.
# matplotlib is set up for jobs: Agg backend (/etc/matplotlibrc), its font list built here into
# /var/cache/matplotlib (read when a job's empty cache has none: no rebuild per job), and two
# strings that would run code refused (a `module://` backend imports a module by name; a cycler
# string was given to eval()).
# The recipe (packages, purge lists and the build, configuration and import functions) is
# hashed: the label org.mecapy.image-recipe and the rootfs tarball's name carry the hash, so a
# change to any of them makes the next run rebuild (bump IMAGE_VERSION to force one).
#
# Configuration (environment):
#   MECAPY_HOME           shared install dir (default /var/lib/mecapy); rootfs under images/
#   MECAPY_RUN_DIR        runtime files (default <repo>/.run); log in logs/images.log
#   MECAPY_DEBIAN_MIRROR  Debian mirror for debootstrap (default: the host's apt source)
#   MECAPY_IMAGE_SCIPY    1 (default) to include python3-scipy, 0 to leave it out
#   MECAPY_IMAGE_MATPLOTLIB  1 (default) to include python3-matplotlib, 0 to leave it out
# Runs as root, non-interactively, on Debian 12. Requires a running engine (infra/services.sh up).

set -Eeuo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${MECAPY_RUN_DIR:-$REPO_DIR/.run}
MECAPY_HOME=${MECAPY_HOME:-/var/lib/mecapy}
LOG_DIR=$RUN_DIR/logs
LOG=$LOG_DIR/images.log

IMAGE=mecapy-python:bookworm
IMAGE_VERSION=2
SUITE=bookworm
SCIPY=${MECAPY_IMAGE_SCIPY:-1}
MATPLOTLIB=${MECAPY_IMAGE_MATPLOTLIB:-1}
PACKAGES=python3-minimal,python3-numpy
VARIANT=numpy
if [[ $SCIPY == 1 ]]; then
  PACKAGES=$PACKAGES,python3-scipy
  VARIANT=$VARIANT-scipy
fi
if [[ $MATPLOTLIB == 1 ]]; then
  PACKAGES=$PACKAGES,python3-matplotlib
  VARIANT=$VARIANT-matplotlib
fi
IMAGES_DIR=$MECAPY_HOME/images
LABEL=org.mecapy.image-version
PACKAGES_LABEL=org.mecapy.image-packages
RECIPE_LABEL=org.mecapy.image-recipe

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

# What python3-matplotlib's dependencies pull in that a headless Agg job never loads: the Tk
# and X11 stack (python3-pil.imagetk -> python3-tk; PIL links only libxcb), the web backend's
# JavaScript, python3-fonttools' optional extras (sympy, lxml with ICU, fs, unicode-data, ...:
# matplotlib only subsets fonts for PDF/PS, which needs none of them) and perl (mailcap, via
# mime-support; media-types already gives /etc/mime.types). About 170 MB.
RUNTIME_UNUSED=(
  python3-pil.imagetk python3-tk tk8.6-blt2.5 blt libtk8.6 libtcl8.6 libxft2 libxss1 libxext6
  libxrender1 libx11-6 libx11-data x11-common libfontconfig1 fontconfig-config libjs-jquery
  libjs-jquery-ui python3-sympy python3-mpmath python3-lxml libxslt1.1 libxml2 libicu72
  unicode-data python3-fs python3-appdirs python3-tz python3-lz4 python3-brotli
  python3-unicodedata2 python3-ufolib2 python3-attr python3-typing-extensions mime-support
  mailcap perl libperl5.36 perl-modules-5.36 libgdbm-compat4 libgdbm6
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

# The checks a job would notice, as a job runs: uid 1000, no network, read-only root, a noexec
# /tmp and an empty writable /work as HOME. With matplotlib: a plot saved to /work/out/plot.png
# with nothing on stderr (no warning about config or cache directories) and no font list
# written (the image's is read), and the two refused strings refused.
verify_image() {
  STEP=verify
  local out
  if ! out=$(docker run --rm --network none --user 1000:1000 "$IMAGE" \
    python3 -c 'import numpy; print(numpy.__version__)' 2>&1 </dev/null); then
    printf '%s\n' "$out" >>"$LOG"
    fail "the image does not run python3 with numpy: $out"
  fi
  say "verified: python3 imports numpy $out as uid 1000 with --network none"
  [[ $MATPLOTLIB == 1 ]] || return 0
  local check
  check=$(
    cat <<'EOF'
import os, sys
import matplotlib
import matplotlib.pyplot as plt
os.makedirs("/work/out")
fig, ax = plt.subplots()
ax.plot([0, 1, 2], [1, 3.5, 6], "o", label="points")
ax.plot([0, 2], [1, 6], label="fit")
ax.set_title("$\\sigma = E\\varepsilon$")
ax.legend()
fig.savefig("/work/out/plot.png")
fig.savefig("/work/out/plot.pdf")
plt.style.use("ggplot")
with open("/work/out/plot.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n", "not a PNG"
assert matplotlib.get_backend().lower() == "agg", matplotlib.get_backend()
assert not os.path.exists(os.path.join(matplotlib.get_cachedir(), "fontlist-v330.json")), \
    "the font list was rebuilt"
for refused in (
    lambda: matplotlib.use("module://main"),
    lambda: plt.switch_backend("module://main"),
    lambda: matplotlib.rcParams.__setitem__(
        "axes.prop_cycle", "[(g := (g.gi_frame for _ in [1])), *g][1]"),
):
    try:
        refused()
    except ValueError:
        continue
    sys.exit("a string that runs code was accepted")
print(matplotlib.__version__)
EOF
  )
  if ! out=$(docker run --rm --network none --user 1000:1000 --read-only --cap-drop ALL \
    --security-opt no-new-privileges --tmpfs /tmp:size=16m,rw,noexec,mode=1777 \
    --tmpfs /work:size=32m,uid=1000,gid=1000,mode=0755 -w /work --env HOME=/work \
    --env PYTHONDONTWRITEBYTECODE=1 "$IMAGE" python3 -c "$check" 2>&1 </dev/null) ||
    [[ $out == *$'\n'* || ! $out =~ ^[0-9.]+$ ]]; then
    printf '%s\n' "$out" >>"$LOG"
    fail "matplotlib does not plot cleanly in the sandbox's conditions: $out"
  fi
  say "verified: matplotlib $out saves a PNG and a PDF with Agg, read-only root, HOME=/work, no warning, no font list rebuilt"
}

print_image() {
  local id size
  id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
  size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
  say "$IMAGE id $id size $((size / 1024 / 1024)) MB ($size bytes), version $(image_version), recipe ${RECIPE:0:12}"
}

# configure_matplotlib: inside the rootfs (chroot), as root.
# - /etc/matplotlibrc (Debian's system rc): backend Agg instead of TkAgg (Tk is not installed).
# - The font list: matplotlib reads it from its cache directory, which must be writable (else it
#   warns and uses a temporary one) and is empty in every job (HOME=/work starts empty, the root
#   file system is read-only). It is built here into /var/cache/matplotlib and font_manager reads
#   it from there when the cache directory has none, so no job rebuilds it (about 0.5 s of CPU).
# - A backend named `module://name` imports the module `name` (matplotlib.use, switch_backend,
#   rcParams["backend"], savefig(backend=...), a ./matplotlibrc the job wrote): refused, so no
#   file the job wrote is imported by name.
# - A cycler given as a string (rcParams["axes.prop_cycle"], style and rc files, ./matplotlibrc)
#   went to eval() with only dunder attributes refused, which runs any code through generator
#   frames: it is now evaluated from its syntax tree (cycler(...) calls, literals, lists, tuples,
#   + and *), never by eval.
# Each change checks that the text it replaces is there, so a new matplotlib fails the build
# instead of passing unchanged; the .pyc files are rebuilt.
configure_matplotlib() {
  local root=$1
  STEP="configure matplotlib"
  grep -q '^backend: TkAgg$' "$root/etc/matplotlibrc" ||
    fail "/etc/matplotlibrc has no 'backend: TkAgg' line to replace"
  sed -i 's/^backend: TkAgg$/backend: Agg/' "$root/etc/matplotlibrc"
  cat >"$root/tmp/mecapy-matplotlib.py" <<'EOF'
import pathlib
import py_compile

SITE = pathlib.Path("/usr/lib/python3/dist-packages/matplotlib")


def patch(relative, old, new):
    path = SITE / relative
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{path}: the text to replace is not there once: {old!r}")
    path.write_text(text.replace(old, new))
    py_compile.compile(str(path), doraise=True)


patch(
    "font_manager.py",
    "            fm = json_load(fm_path)\n",
    "            # mecapy-python: the font list built with the image when the cache has none\n"
    "            # (a job's cache directory starts empty; the image is read-only).\n"
    "            fm = json_load(fm_path if fm_path.exists() else\n"
    "                           Path(\"/var/cache/matplotlib\", fm_path.name))\n",
)
patch(
    "cbook/__init__.py",
    '    return (name[9:] if name.startswith("module://")\n',
    "    # mecapy-python: no backend imports a module named by a string.\n"
    '    if name.startswith("module://"):\n'
    '        raise ValueError(f"backend {name!r}: module:// backends are disabled")\n'
    '    return (name[9:] if name.startswith("module://")\n',
)
patch(
    "rcsetup.py",
    '        s if s is _auto_backend_sentinel or s.startswith("module://")\n',
    "        # mecapy-python: module:// backends are disabled.\n"
    "        s if s is _auto_backend_sentinel\n",
)
patch(
    "rcsetup.py",
    "def validate_cycler(s):\n",
    "def _literal_cycler(node):\n"
    "    # mecapy-python: a cycler string is evaluated from its syntax tree, never by eval():\n"
    "    # cycler(...) calls, literals, lists, tuples, + and *.\n"
    "    if isinstance(node, ast.Constant):\n"
    "        return node.value\n"
    "    if isinstance(node, ast.List):\n"
    "        return [_literal_cycler(e) for e in node.elts]\n"
    "    if isinstance(node, ast.Tuple):\n"
    "        return tuple(_literal_cycler(e) for e in node.elts)\n"
    "    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):\n"
    "        return -_literal_cycler(node.operand)\n"
    "    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):\n"
    "        left, right = _literal_cycler(node.left), _literal_cycler(node.right)\n"
    "        return left + right if isinstance(node.op, ast.Add) else left * right\n"
    "    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)\n"
    "            and node.func.id == 'cycler'\n"
    "            and all(k.arg is not None for k in node.keywords)):\n"
    "        return cycler(*[_literal_cycler(a) for a in node.args],\n"
    "                      **{k.arg: _literal_cycler(k.value) for k in node.keywords})\n"
    "    raise ValueError(f'{type(node).__name__} is not allowed in a cycler string')\n"
    "\n"
    "\n"
    "def validate_cycler(s):\n",
)
patch(
    "rcsetup.py",
    "            s = eval(s, {'cycler': cycler, '__builtins__': {}})\n",
    "            s = _literal_cycler(ast.parse(s, mode='eval').body)\n",
)
EOF
  run configure-matplotlib chroot "$root" python3 /tmp/mecapy-matplotlib.py
  rm -f "$root/tmp/mecapy-matplotlib.py"
  install -d -m 0755 "$root/var/cache/matplotlib"
  run font-cache chroot "$root" env -i MPLCONFIGDIR=/var/cache/matplotlib \
    python3 -c 'import matplotlib.font_manager'
  [[ -s $root/var/cache/matplotlib/fontlist-v330.json ]] ||
    fail "no font list in /var/cache/matplotlib (a new matplotlib names it differently?)"
  # Only the font list stays (the rc of that run, if any, would shadow /etc/matplotlibrc).
  find "$root/var/cache/matplotlib" -mindepth 1 ! -name 'fontlist-v*.json' -delete
  chmod 0644 "$root"/var/cache/matplotlib/fontlist-v*.json
}

# purge ROOT STEP PACKAGE...: dpkg --purge those of PACKAGE that are installed, ignoring the
# dependencies that name them (the image never runs apt).
purge() {
  local root=$1 step=$2 p
  shift 2
  local installed=()
  for p in "$@"; do
    # shellcheck disable=SC2016 # ${Status} is dpkg-query's format, not a shell expansion.
    if chroot "$root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
      installed+=("$p")
    fi
  done
  if ((${#installed[@]})); then
    run "$step" chroot "$root" dpkg --purge --force-depends "${installed[@]}"
  fi
}

# build_rootfs: debootstrap, purge, configure, slim, tarball ($ROOTFS_TAR).
build_rootfs() {
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
  local t0=$SECONDS
  run debootstrap debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$BUILD_DIR" "$MIRROR"
  say "debootstrap done ($((SECONDS - t0)) s)"
  unmount_below "$BUILD_DIR"

  # python3-scipy depends on python3-pythran, which drags in compilers, boost and -dev packages
  # (about 450 MB) that only matter when building extensions. Jobs never compile: purge them.
  # dpkg is told to ignore the now-unmet dependency; the image never runs apt.
  STEP="purge build tools"
  purge "$BUILD_DIR" purge-build-tools "${BUILD_ONLY[@]}"
  find "$BUILD_DIR/usr/lib/gcc" -depth -mindepth 1 -empty -delete 2>/dev/null || true
  if [[ $MATPLOTLIB == 1 ]]; then
    STEP="purge unused"
    purge "$BUILD_DIR" purge-runtime-unused "${RUNTIME_UNUSED[@]}"
    configure_matplotlib "$BUILD_DIR"
  fi

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
}

# import_image: the tarball as $IMAGE, labelled with its version, packages and recipe.
import_image() {
  STEP=import
  say "docker import -> $IMAGE"
  local old_id new_id
  old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  docker import \
    --change 'USER 1000:1000' \
    --change 'WORKDIR /work' \
    --change "LABEL $LABEL=$IMAGE_VERSION" \
    --change "LABEL $PACKAGES_LABEL=$PACKAGES" \
    --change "LABEL $RECIPE_LABEL=$RECIPE" \
    --change 'CMD ["python3"]' \
    "$ROOTFS_TAR" "$IMAGE" >>"$LOG" 2>&1 </dev/null || fail "docker import failed"
  new_id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
  if [[ -n $old_id && $old_id != "$new_id" ]]; then
    # The previous version is now untagged; remove it unless a container still uses it.
    docker image rm "$old_id" >>"$LOG" 2>&1 </dev/null || true
  fi
}

# The recipe's hash: what goes into the rootfs (names the tarball), then that and the import
# (labels the image). Function bodies are hashed as bash prints them (comments dropped).
recipe_hash() { sha256sum | cut -c1-64; }
ROOTFS_RECIPE=$(
  {
    printf '%s\n' "$IMAGE_VERSION" "$SUITE" "$PACKAGES" "${BUILD_ONLY[*]}" "${RUNTIME_UNUSED[*]}"
    declare -f build_rootfs purge configure_matplotlib
  } | recipe_hash
)
RECIPE=$({
  printf '%s\n' "$ROOTFS_RECIPE"
  declare -f import_image
} | recipe_hash)
ROOTFS_TAR=$IMAGES_DIR/mecapy-python-$SUITE-$VARIANT-${ROOTFS_RECIPE:0:12}.tar
BUILD_DIR=$IMAGES_DIR/.build-$SUITE-$VARIANT-${ROOTFS_RECIPE:0:12}

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

if ((FORCE_IMAGE == 0)) && [[ $(image_label "$RECIPE_LABEL") == "$RECIPE" ]]; then
  say "$IMAGE is present (version $IMAGE_VERSION, recipe ${RECIPE:0:12}, $PACKAGES)"
  print_image
  verify_image
  exit 0
fi

START=$SECONDS
if ((FORCE_ROOTFS)); then rm -f "$ROOTFS_TAR"; fi

if [[ -s $ROOTFS_TAR ]]; then
  say "reusing rootfs tarball $ROOTFS_TAR"
else
  build_rootfs
fi
import_image
say "built $IMAGE in $((SECONDS - START)) s"
print_image
verify_image
