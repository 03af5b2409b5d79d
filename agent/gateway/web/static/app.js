// edge-gateway web page: live parts over server-sent events. No framework, no build step.
// An element with data-live="<url>" gets its content replaced by each fragment the server
// sends; an "end" event closes the stream (the rollout finished) and reloads the page once,
// so its buttons match the final state.
"use strict";
document.querySelectorAll("[data-live]").forEach(function (el) {
  var url = el.getAttribute("data-live");
  if (!url || !window.EventSource) { return; }
  var source = new EventSource(url);
  source.onmessage = function (e) { if (e.data) { el.innerHTML = e.data; } };
  source.addEventListener("end", function () { source.close(); window.location.reload(); });
});
