// The room page's live part: tiles updated from the server's event stream, filter and search.
// Node text (names, reasons) is only ever set with textContent: never parsed as HTML.
(function () {
  "use strict";
  var list = document.getElementById("tiles");
  if (!list) { return; }
  var template = document.getElementById("tile-template");
  var search = document.getElementById("q");
  var stateSelect = document.getElementById("state");
  var live = document.getElementById("live");
  var STATES = ["provisioning", "online", "offline", "needs-help", "stuck", "done"];
  var tiles = new Map();
  Array.prototype.forEach.call(list.children, function (li) {
    tiles.set(li.dataset.id, { el: li, data: readTile(li) });
  });
  document.documentElement.classList.add("js");

  function readTile(li) {
    var data = { id: li.dataset.id, state: (li.className.match(/state-([a-z-]+)/) || [])[1] || "" };
    li.querySelectorAll("[data-f]").forEach(function (el) {
      if (el.dataset.f !== "check" && el.dataset.f !== "state") { data[el.dataset.f] = el.textContent.trim(); }
      if (el.dataset.f === "check_at") { data.check_at = el.getAttribute("datetime") || ""; }
    });
    if (data.attendee === "(no attendee)") { data.attendee = ""; }
    return data;
  }

  function ago(iso) {
    if (!iso) { return ""; }
    var seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (seconds < 60) { return seconds + " s ago"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + " min ago"; }
    if (seconds < 86400) { return Math.floor(seconds / 3600) + " h ago"; }
    return Math.floor(seconds / 86400) + " d ago";
  }

  function fill(li, tile) {
    li.className = "tile state-" + tile.state;
    li.dataset.id = tile.id;
    li.querySelectorAll("[data-f]").forEach(function (el) {
      var f = el.dataset.f;
      if (f === "check") {
        el.className = "row4 check-" + (tile.check_status || "none");
      } else if (f === "state") {
        el.textContent = tile.state.replace("-", " ");
      } else if (f === "name") {
        el.textContent = tile.name || "";
        if (tile.state === "provisioning") { el.removeAttribute("href"); } else { el.href = "/nodes/" + encodeURIComponent(tile.id); }
      } else if (f === "attendee") {
        el.textContent = tile.attendee || "(no attendee)";
      } else if (f === "check_at") {
        el.textContent = ago(tile.check_at);
        el.setAttribute("datetime", tile.check_at || "");
        el.title = tile.check_at || "";
      } else {
        el.textContent = tile[f] == null ? "" : String(tile[f]);
      }
    });
  }

  function key(tile) {
    return ((tile.attendee || "\uffff").toLowerCase()) + "\u0000" + (tile.name || "").toLowerCase();
  }

  function place(entry) {
    var k = key(entry.data);
    var next = null;
    tiles.forEach(function (other) {
      if (other !== entry && other.el.parentNode === list && key(other.data) > k &&
          (next === null || key(other.data) < key(next.data))) { next = other; }
    });
    list.insertBefore(entry.el, next ? next.el : null);
  }

  function matches(tile) {
    var wanted = stateSelect ? stateSelect.value : "";
    if (wanted && tile.state !== wanted) { return false; }
    var q = search ? search.value.trim().toLowerCase() : "";
    if (!q) { return true; }
    return [tile.attendee, tile.name, tile.host, tile.lab, tile.step].join(" ").toLowerCase().indexOf(q) >= 0;
  }

  function refresh() {
    var counts = {};
    STATES.forEach(function (s) { counts[s] = 0; });
    tiles.forEach(function (entry) {
      entry.el.hidden = !matches(entry.data);
      counts[entry.data.state] = (counts[entry.data.state] || 0) + 1;
    });
    document.querySelectorAll(".summary .count").forEach(function (el) {
      el.querySelector("b").textContent = String(counts[el.dataset.state] || 0);
    });
    document.getElementById("total").textContent = String(tiles.size);
    document.getElementById("empty").hidden = tiles.size > 0;
  }

  function apply(message) {
    if (message.full) {
      var seen = new Set(message.tiles.map(function (t) { return t.id; }));
      tiles.forEach(function (entry, id) { if (!seen.has(id)) { entry.el.remove(); tiles.delete(id); } });
    }
    (message.removed || []).forEach(function (id) {
      var entry = tiles.get(id);
      if (entry) { entry.el.remove(); tiles.delete(id); }
    });
    message.tiles.forEach(function (tile) {
      var entry = tiles.get(tile.id);
      var moved = !entry || key(entry.data) !== key(tile);
      if (!entry) {
        entry = { el: template.content.firstElementChild.cloneNode(true), data: tile };
        tiles.set(tile.id, entry);
      }
      entry.data = tile;
      fill(entry.el, tile);
      if (moved) { place(entry); }
    });
    refresh();
  }

  function setLive(state, text) {
    live.dataset.state = state;
    live.textContent = text;
  }

  var source = new EventSource(list.dataset.stream);
  source.addEventListener("open", function () { setLive("open", "live"); });
  source.addEventListener("error", function () { setLive("retrying", "live: reconnecting…"); });
  source.addEventListener("tiles", function (event) { apply(JSON.parse(event.data)); });

  function onFilter() {
    refresh();
    var params = new URLSearchParams(window.location.search);
    if (search.value) { params.set("q", search.value); } else { params.delete("q"); }
    if (stateSelect.value) { params.set("state", stateSelect.value); } else { params.delete("state"); }
    var query = params.toString();
    history.replaceState(null, "", window.location.pathname + (query ? "?" + query : ""));
  }
  if (search) { search.addEventListener("input", onFilter); }
  if (stateSelect) { stateSelect.addEventListener("change", onFilter); }
  document.querySelectorAll(".summary .count").forEach(function (el) {
    el.addEventListener("click", function () {
      stateSelect.value = stateSelect.value === el.dataset.state ? "" : el.dataset.state;
      onFilter();
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "/" && document.activeElement !== search) {
      event.preventDefault();
      search.focus();
    }
  });
  setInterval(function () {
    document.querySelectorAll("time[data-f=check_at]").forEach(function (el) {
      el.textContent = ago(el.getAttribute("datetime"));
    });
  }, 15000);
})();
