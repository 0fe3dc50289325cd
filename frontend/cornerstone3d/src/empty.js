// Empty stand-in for the Node built-ins (fs, path, url) that the emscripten
// codec glue only touches when running under Node. Never used in a browser.
export default {};
