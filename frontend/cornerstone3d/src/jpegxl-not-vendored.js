// The JPEG-XL decoder (@cornerstonejs/codec-libjxl, ~1.1 MB of wasm) is left
// out of the vendored bundle on purpose. build.sh aliases the codec's glue
// module to this stub so JPEG-XL frames fail with a clear message instead of
// a 404 on a missing .wasm file.
export default function jpegxlFactory() {
  return Promise.reject(
    new Error('JPEG-XL decoding is not included in the vendored Cornerstone3D bundle'),
  );
}
