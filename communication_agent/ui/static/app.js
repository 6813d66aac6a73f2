// Communication Agent console: keyboard shortcuts, the help overlay and small comforts.
// Loaded from our own origin (the page's CSP allows no inline script and no eval).
(function () {
  "use strict";

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  function cards() { return Array.prototype.slice.call(document.querySelectorAll(".card")); }

  var selectedTicket = null;
  function select(index) {
    var all = cards();
    if (!all.length) return;
    index = Math.max(0, Math.min(all.length - 1, index));
    all.forEach(function (c) { c.classList.remove("selected"); });
    all[index].classList.add("selected");
    all[index].scrollIntoView({ block: "nearest" });
    selectedTicket = all[index].getAttribute("data-ticket");
  }
  function selectedIndex() {
    return cards().findIndex(function (c) { return c.classList.contains("selected"); });
  }

  function follow(selector) {
    var link = document.querySelector(selector);
    if (link) window.location.href = link.getAttribute("href");
  }

  function openHelp() {
    var help = document.getElementById("help");
    if (help && !help.open) help.showModal();
  }

  var pendingG = false;
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape" && typing(event.target)) { event.target.blur(); return; }
    if (typing(event.target)) return;
    var onBoard = !!document.querySelector(".board");
    var key = event.key;
    if (pendingG) {
      pendingG = false;
      if (key === "b") { window.location.href = "/board"; event.preventDefault(); }
      return;
    }
    switch (key) {
      case "?": openHelp(); break;
      case "g": pendingG = true; setTimeout(function () { pendingG = false; }, 1500); break;
      case "/": {
        var search = document.querySelector("[data-search]");
        if (search) search.focus(); else window.location.href = "/board";
        break;
      }
      case "j":
        if (onBoard) select(selectedIndex() + 1); else follow("[data-next]");
        break;
      case "k":
        if (onBoard) select(selectedIndex() - 1); else follow("[data-prev]");
        break;
      case "o": case "Enter": {
        var card = document.querySelector(".card.selected .card-link");
        if (card) window.location.href = card.getAttribute("href"); else return;
        break;
      }
      case "e": {
        var editor = document.querySelector("[data-editor]");
        if (editor) { editor.focus(); editor.setSelectionRange(editor.value.length, editor.value.length); }
        break;
      }
      case "n": { var note = document.querySelector("[data-note]"); if (note) note.focus(); break; }
      case "a": {
        var approve = document.querySelector("[data-approve]");
        if (approve && window.confirm("Approve this reply and send it to the customer?")) approve.click();
        break;
      }
      default: return;
    }
    event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("[data-help-open],[data-back]") : null;
    if (!target) return;
    if (target.hasAttribute("data-help-open")) { openHelp(); }
    else if (window.history.length > 1) { event.preventDefault(); window.history.back(); }
  });

  // The plan's ticks are the operator's own progress: kept in this browser only.
  function restorePlan() {
    document.querySelectorAll("[data-plan-step]").forEach(function (box) {
      var key = "plan:" + box.getAttribute("data-plan-step");
      box.checked = window.localStorage.getItem(key) === "1";
      box.addEventListener("change", function () {
        if (box.checked) window.localStorage.setItem(key, "1"); else window.localStorage.removeItem(key);
      });
    });
  }

  // After the board refreshes itself, keep the operator's keyboard selection.
  document.addEventListener("htmx:afterSettle", function () {
    if (selectedTicket) {
      var again = document.querySelector('.card[data-ticket="' + selectedTicket + '"]');
      if (again) again.classList.add("selected");
    }
    restorePlan();
  });
  document.addEventListener("DOMContentLoaded", restorePlan);
})();

// Drag a card onto another column to move it. The move goes through the same form endpoint
// (and the same service) as the Move button; a refused move shows the server's explanation.
(function () {
  "use strict";
  var dragged = null;
  document.addEventListener("dragstart", function (event) {
    var card = event.target.closest && event.target.closest(".card[draggable]");
    if (!card) return;
    dragged = card;
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", card.getAttribute("data-ticket"));
  });
  document.addEventListener("dragover", function (event) {
    if (dragged && event.target.closest && event.target.closest("[data-drop-state]")) event.preventDefault();
  });
  document.addEventListener("drop", function (event) {
    var column = event.target.closest && event.target.closest("[data-drop-state]");
    if (!dragged || !column) return;
    event.preventDefault();
    var card = dragged; dragged = null;
    var state = column.getAttribute("data-drop-state");
    if (card.closest("[data-drop-state]") === column) return;
    var app = document.getElementById("app");
    var csrf = JSON.parse((app && app.getAttribute("hx-headers")) || "{}")["X-CSRF-Token"] || "";
    var form = new URLSearchParams({ state: state, version: card.getAttribute("data-version"), csrf_token: csrf, back: "/board" });
    fetch("/tickets/" + card.getAttribute("data-ticket") + "/state", {
      method: "POST", body: form, credentials: "same-origin",
      headers: { "HX-Request": "true", "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded" }
    }).then(function (response) {
      if (response.ok) {
        window.htmx.ajax("GET", window.location.pathname + window.location.search,
          { target: "#board-columns", select: "#board-columns", swap: "outerHTML" });
        return null;
      }
      return response.text().then(function (html) {
        document.getElementById("flash").innerHTML = html;  // our own escaped fragment
      });
    });
  });
})();

// The board refreshes itself, but not while the operator is choosing something on it (an open
// move menu would vanish under their cursor) or while the tab is hidden.
document.addEventListener("htmx:beforeRequest", function (event) {
  "use strict";
  var source = event.detail && event.detail.elt;
  if (!source || source.id !== "board-columns") return;
  var busy = source.contains(document.activeElement) && document.activeElement !== document.body;
  if (busy || document.visibilityState === "hidden") event.preventDefault();
});
