// The bridge library loads the Rust crypto bindings at start even when
// encryption is off. The real native library is fetched from GitHub by its
// package's install script, which the test machines cannot reach, so this
// module takes its place: loading works, and using any of it throws.
"use strict";
const unavailable = () => { throw new Error("end-to-end encryption is not available to this test bridge"); };
const placeholder = new Proxy(function () {}, {
  get: (_, key) => (key === Symbol.toPrimitive || key === "then" ? undefined : placeholder),
  apply: unavailable,
  construct: unavailable,
});
module.exports = new Proxy({}, { get: (_, key) => (key === "then" ? undefined : placeholder) });
