#!/usr/bin/env bash
# Rebuild the vendored Cornerstone3D bundle in static/vendor/cornerstone3d/.
#   bash frontend/cornerstone3d/build.sh
# Needs node + npm at build time only; the output is plain static files.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
OUT="$ROOT/static/vendor/cornerstone3d"
cd "$HERE"

npm ci --no-audit --no-fund

# Fixes to the pinned packages that upstream doesn't have yet: patches/<package>/<what>.patch,
# each small and named for what it fixes. npm ci has just laid the packages anew.
for fix in patches/*/*.patch; do
  patch --quiet -p1 -d "node_modules/@cornerstonejs/$(basename "$(dirname "$fix")")" < "$fix"
done

LOADER_ESM=node_modules/@cornerstonejs/dicom-image-loader/dist/esm
mkdir -p "$OUT"
rm -f "$OUT"/*.js "$OUT"/*.wasm "$OUT"/*.map "$OUT"/VERSION

# Two ESM entries: the app module and the loader's decode worker, which the
# loader starts as new URL('./decodeImageFrameWorker.js', import.meta.url),
# so it must sit next to cornerstone3d.js under exactly that name.
./node_modules/.bin/esbuild \
  "cornerstone3d=src/cornerstone3d.js" \
  "decodeImageFrameWorker=$LOADER_ESM/decodeImageFrameWorker.js" \
  --bundle --format=esm --platform=browser --target=es2022 --minify \
  --legal-comments=eof --log-level=warning \
  --alias:fs=./src/empty.js --alias:path=./src/empty.js --alias:url=./src/empty.js \
  --alias:@cornerstonejs/codec-libjxl/decodewasmjs=./src/jpegxl-not-vendored.js \
  --outdir="$OUT"

# Codec wasm files, looked up under the wasmBasePath given to initCornerstone().
# JPEG-XL (codec-libjxl, ~1.1 MB) is deliberately left out.
CS=node_modules/@cornerstonejs
cp "$CS/codec-openjpeg/dist/openjpegwasm_decode.wasm" \
   "$CS/codec-charls/dist/charlswasm_decode.wasm" \
   "$CS/codec-libjpeg-turbo-8bit/dist/libjpegturbowasm_decode.wasm" \
   "$CS/codec-openjph/dist/openjphjs.wasm" \
   "$OUT/"

ver() { node -p "require('./node_modules/$1/package.json').version"; }
{
  echo "@cornerstonejs/core $(ver @cornerstonejs/core)"
  echo "@cornerstonejs/tools $(ver @cornerstonejs/tools)"
  echo "@cornerstonejs/dicom-image-loader $(ver @cornerstonejs/dicom-image-loader)"
  echo "@cornerstonejs/codec-openjpeg $(ver @cornerstonejs/codec-openjpeg)"
  echo "@cornerstonejs/codec-charls $(ver @cornerstonejs/codec-charls)"
  echo "@cornerstonejs/codec-libjpeg-turbo-8bit $(ver @cornerstonejs/codec-libjpeg-turbo-8bit)"
  echo "@cornerstonejs/codec-openjph $(ver @cornerstonejs/codec-openjph)"
  echo "esbuild $(ver esbuild)"
} > "$OUT/VERSION"

ls -l "$OUT"
