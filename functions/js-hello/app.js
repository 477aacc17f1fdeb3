// `js-hello`: the hello sample in JavaScript, built with componentize-js (StarlingMonkey)
// into a wasi:http/proxy component of ~10 MB. Every instance carries a whole JS engine, so
// instantiating on the request path is what makes JS cold starts slow: fnhost's warm pool
// takes that off the request path. Build: scripts/build-js-function.
addEventListener("fetch", (event) => {
  const greeting = "Hello from JavaScript";
  event.respondWith(
    new Response(`${greeting}, world!\n`, {
      headers: { "content-type": "text/plain; charset=utf-8" },
    }),
  );
});
