#!/usr/bin/env bash
# Build ncnn's C++ library (libncnn + headers + CMake package) from the package registry's sdist,
# so the C++ program that `ssdconv convert --ncnn-example` writes can be built on a fresh machine.
#
#   bash bench/build_ncnn_lib.sh     # stdout: the install prefix, one line (progress on stderr)
#
# The `ncnn` wheel holds only the Python module; the sdist of ncnn 1.0.20260526 holds src/ and
# cmake/ (the library), not tools/ or examples/.  pip refuses that sdist by version (its setup.py
# computes a version from today's date), so the file itself is fetched from the registry with
# python's urllib and checked against the sha256 pinned here (the registry's own index lists it).
#
# Everything lives outside the repository, in $SSDCONV_NCNN_CACHE (default ${TMPDIR:-/tmp}/
# ssdconv-ncnn): the sdist, its unpacked tree, the build tree and the install prefix.  A re-run
# skips each step already done (download, unpack, configure, build, install); a finished build
# is recognised by the stamp file in the prefix and costs nothing.
#
# Environment:
#   SSDCONV_NCNN_CACHE  cache folder                                    (default above)
#   JOBS                make -j                                          (default 2)
#   NICE                nice level for configure/build                   (default 10)
#   NCNN_ALL_ISA=1      compile every x86 ISA variant (default: only those /proc/cpuinfo lists)
#   SKIP_APT=1          never call apt-get (cmake, g++, libopencv-dev must then be present)
set -euo pipefail

NCNN_VERSION=1.0.20260526
SDIST_URL=https://files.pythonhosted.org/packages/5b/77/d6acfd9b652463a2037a1113954f2cf0aa7d4c414de31b01aeb1fd9bf9e7/ncnn-$NCNN_VERSION.tar.gz
SDIST_SHA256=282f0f4a1beec1f5212aa0d22c00737418645055f33c2d2082922931cdbdc537

CACHE=${SSDCONV_NCNN_CACHE:-${TMPDIR:-/tmp}/ssdconv-ncnn}
JOBS=${JOBS:-2}
NICE=${NICE:-10}
SDIST=$CACHE/ncnn-$NCNN_VERSION.tar.gz
SRC=$CACHE/src/ncnn-$NCNN_VERSION
BLD=$CACHE/build-$NCNN_VERSION
PREFIX=$CACHE/install-$NCNN_VERSION
STAMP=$PREFIX/.ssdconv-built
LOGS=$CACHE/logs

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
mkdir -p "$CACHE" "$LOGS"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SDIST_SHA256" ] \
   && [ -f "$PREFIX/lib/cmake/ncnn/ncnnConfig.cmake" ]; then
  log "ncnn $NCNN_VERSION already built in $PREFIX"
  echo "$PREFIX"; exit 0
fi
START=$(date +%s)

# 0. build tools: cmake, a C++ compiler, OpenCV's headers (the generated example reads and
#    draws images with OpenCV).  apt-get update runs once, and only when something is missing.
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
command -v make >/dev/null || need+=(make)
dpkg -s libopencv-dev >/dev/null 2>&1 || need+=(libopencv-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "${SKIP_APT:-0}" = 1 ]; then echo "missing: ${need[*]} (SKIP_APT=1)" >&2; exit 1; fi
  log "apt-get install ${need[*]} (log: $LOGS/apt.log)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; } \
    >"$LOGS/apt.log" 2>&1 || { tail -20 "$LOGS/apt.log" >&2; exit 1; }
fi

# 1. the sdist, checked against the pinned sha256 (a mismatching file is removed, never used)
sha_ok() { [ -f "$SDIST" ] && echo "$SDIST_SHA256  $SDIST" | sha256sum -c --status; }
if ! sha_ok; then
  log "downloading $SDIST_URL"
  python3 - "$SDIST_URL" "$SDIST.part" <<'EOF'
import sys, urllib.request
url, dest = sys.argv[1], sys.argv[2]
with urllib.request.urlopen(url, timeout=300) as r, open(dest, "wb") as f:
    while chunk := r.read(1 << 20):
        f.write(chunk)
EOF
  mv "$SDIST.part" "$SDIST"
  sha_ok || { rm -f "$SDIST"; echo "sha256 mismatch for $SDIST_URL" >&2; exit 1; }
fi
log "sdist ok: $SDIST (sha256 $SDIST_SHA256)"

# 2. unpack (once)
if [ ! -f "$SRC/.unpacked" ]; then
  rm -rf "$SRC"; mkdir -p "$CACHE/src"
  tar -xzf "$SDIST" -C "$CACHE/src"
  touch "$SRC/.unpacked"
fi

# 3. configure.  NCNN_RUNTIME_CPU compiles most layers once per x86 ISA level; variants this CPU
#    cannot execute are dead code that doubles the build on 2 cores, so only the ones listed in
#    /proc/cpuinfo are kept (ncnn's runtime dispatch picks the highest supported one either way,
#    as the `ncnn` wheel does).  NCNN_VERSION is fixed so the library reports the sdist's version.
ISA=()
if [ "${NCNN_ALL_ISA:-0}" != 1 ] && [ -r /proc/cpuinfo ] && [ "$(uname -m)" = x86_64 ]; then
  flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
  has() { [[ "$flags" == *" $1 "* ]]; }
  for pair in avx:AVX fma:FMA f16c:F16C avx2:AVX2 xop:XOP avx_vnni:AVXVNNI \
              avx_vnni_int8:AVXVNNIINT8 avx_vnni_int16:AVXVNNIINT16 avx_ne_convert:AVXNECONVERT \
              avx512f:AVX512 avx512_vnni:AVX512VNNI avx512_bf16:AVX512BF16 \
              avx512_fp16:AVX512FP16; do
    has "${pair%%:*}" || ISA+=("-DNCNN_${pair#*:}=OFF")
  done
fi
if [ ! -f "$BLD/CMakeCache.txt" ]; then
  log "configuring (ISA overrides: ${ISA[*]:-none}; log: $LOGS/cmake.log)"
  mkdir -p "$BLD"
  ( cd "$BLD" && nice -n "$NICE" cmake "$SRC" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$PREFIX" -DNCNN_VERSION="${NCNN_VERSION##*.}" \
      -DNCNN_VULKAN=OFF -DNCNN_BUILD_TOOLS=OFF -DNCNN_BUILD_EXAMPLES=OFF \
      -DNCNN_BUILD_BENCHMARK=OFF -DNCNN_BUILD_TESTS=OFF -DNCNN_PYTHON=OFF "${ISA[@]}" ) \
    >"$LOGS/cmake.log" 2>&1 || { tail -30 "$LOGS/cmake.log" >&2; rm -rf "$BLD"; exit 1; }
fi

# 4. build and install (make is incremental: an interrupted build resumes)
log "building libncnn with make -j$JOBS (log: $LOGS/make.log)"
( cd "$BLD" && nice -n "$NICE" make -j"$JOBS" && make install ) >"$LOGS/make.log" 2>&1 || {
  tail -30 "$LOGS/make.log" >&2; exit 1; }
echo "$SDIST_SHA256" > "$STAMP"
log "ncnn $NCNN_VERSION installed in $PREFIX in $(( $(date +%s) - START )) s"
echo "$PREFIX"
