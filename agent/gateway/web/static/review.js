// Review grid keyboard: j/k move between frames, a accept, r reject, b next box, digits set
// the selected box's class. Each key posts the same form the buttons post (CSRF header), then
// updates the frame in place. Without JavaScript the buttons work on their own.
"use strict";
(function () {
  var grid = document.getElementById("review-grid");
  if (!grid) { return; }
  var csrf = document.querySelector("meta[name=csrf]").getAttribute("content");
  var announce = document.getElementById("announce");
  var cards = Array.prototype.slice.call(grid.querySelectorAll(".rcard"));
  var current = 0;
  var box = 0;

  function select(i) {
    if (!cards.length) { return; }
    current = Math.max(0, Math.min(cards.length - 1, i));
    box = 0;
    cards.forEach(function (c, n) { c.classList.toggle("selected", n === current); });
    cards[current].focus();
    markBox();
  }
  function markBox() {
    var items = cards[current].querySelectorAll("[data-box]");
    items.forEach(function (li, n) { li.classList.toggle("selected", n === box); });
  }
  function post(card, action, fields) {
    var body = new URLSearchParams(fields || {});
    return fetch("/review/items/" + card.dataset.id + "/" + action, {
      method: "POST",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json",
                 "Content-Type": "application/x-www-form-urlencoded" },
      body: body, credentials: "same-origin"
    }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) { throw new Error(data.error || ("HTTP " + r.status)); }
        return data;
      });
    }).then(function (data) {
      var badge = card.querySelector("[data-status]");
      badge.textContent = data.status;
      badge.className = "badge s-" + data.status;
      card.dataset.status = data.status;
      var names = data.class_names;
      data.boxes.forEach(function (b) {
        var li = card.querySelector("[data-box='" + b.index + "']");
        if (li) { li.textContent = b.class_id < names.length ? names[b.class_id] : b.class_id; }
      });
      var img = card.querySelector("img");
      img.src = img.src.split("?")[0] + "?v=" + Date.now();
      announce.textContent = card.dataset.id + ": " + data.status;
      return data;
    }).catch(function (err) { announce.textContent = "refused: " + err.message; });
  }
  cards.forEach(function (c, n) { c.addEventListener("focus", function () { if (current !== n) { current = n; box = 0; markBox(); } }); });
  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    var tag = (e.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "select" || tag === "textarea") { return; }
    var card = cards[current];
    if (e.key === "j") { select(current + 1); }
    else if (e.key === "k") { select(current - 1); }
    else if (!card) { return; }
    else if (e.key === "a") { post(card, "accept").then(function () { select(current + 1); }); }
    else if (e.key === "r") { post(card, "reject").then(function () { select(current + 1); }); }
    else if (e.key === "b") {
      var n = card.querySelectorAll("[data-box]").length;
      box = n ? (box + 1) % n : 0; markBox();
    } else if (/^[0-9]$/.test(e.key)) {
      var names = (card.dataset.classes || "").split("|");
      var cls = parseInt(e.key, 10);
      if (cls < names.length && card.querySelector("[data-box]")) {
        post(card, "relabel", { box: String(box), "class": names[cls] });
      } else { announce.textContent = "no class " + e.key + " for this frame"; }
    } else { return; }
    e.preventDefault();
  });
  select(0);
})();
