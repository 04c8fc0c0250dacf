// The progress matrix's live part: re-read /matrix/data when the room's stream reports a change, redraw the
// table (keeping the selection), and "select failing" per column. Node text only ever goes in textContent.
(function () {
  "use strict";
  var table = document.getElementById("matrix");
  if (!table) { return; }
  var live = document.getElementById("live");
  var GLYPH = { passed: "\u2713", failing: "\u2717", none: "\u00b7" };
  var loading = false, again = false, timer = null;
  document.documentElement.classList.add("js");

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text != null) { e.textContent = text; }
    return e;
  }

  function cellText(cell) {
    if (cell[0] === "none") { return "not started"; }
    return cell[2] ? cell[1] + ": " + cell[2] : cell[1];
  }

  function head(data) {
    var thead = el("thead");
    var labs = el("tr", "labs"), steps = el("tr", "steps");
    var who = el("th", "who", "Attendee ");
    who.scope = "col";
    who.rowSpan = 2;
    who.appendChild(el("span", "node", "node"));
    labs.appendChild(who);
    data.catalog.forEach(function (pair) {
      var th = el("th", "lab", pair[0]);
      th.scope = "colgroup";
      th.colSpan = pair[1].length;
      labs.appendChild(th);
    });
    data.columns.forEach(function (col, i) {
      var th = el("th", "step");
      th.scope = "col";
      th.dataset.col = String(i);
      th.dataset.lab = col.lab;
      th.dataset.step = col.step;
      th.appendChild(el("span", "step-name", col.step));
      th.appendChild(el("span", "failing-count" + (col.failing ? " some" : ""), col.failing + " failing"));
      if (col.failing) {
        var button = el("button", "select-failing", "select failing");
        button.type = "button";
        button.dataset.col = String(i);
        button.setAttribute("aria-label", "Select everyone failing " + col.lab + " / " + col.step);
        th.appendChild(button);
      }
      var reasons = el("ul", "reasons");
      col.reasons.forEach(function (r) {
        var li = el("li", null, r[0] + (r[0] === 1 ? " attendee: " : " attendees: ") + r[1]);
        li.title = r[1];
        reasons.appendChild(li);
      });
      th.appendChild(reasons);
      steps.appendChild(th);
    });
    thead.appendChild(labs);
    thead.appendChild(steps);
    return thead;
  }

  function body(data, checked) {
    var tbody = el("tbody");
    data.rows.forEach(function (row) {
      var tr = el("tr", "node-" + row.state);
      tr.dataset.id = row.id;
      var th = el("th", "who");
      th.scope = "row";
      var label = el("label");
      var box = el("input", "select-node");
      box.type = "checkbox";
      box.checked = checked.has(row.id);
      label.appendChild(box);
      label.appendChild(document.createTextNode(" "));
      label.appendChild(el("span", "attendee", row.attendee || "(no attendee)"));
      th.appendChild(label);
      th.appendChild(document.createTextNode(" "));
      th.appendChild(el("span", "node", row.name + (row.state === "offline" ? " \u00b7 offline" : "")));
      tr.appendChild(th);
      row.cells.forEach(function (cell) {
        var td = el("td", "c-" + cell[0]);
        var text = cellText(cell);
        td.title = text;
        var glyph = el("span", null, GLYPH[cell[0]] || "?");
        glyph.setAttribute("aria-hidden", "true");
        td.appendChild(glyph);
        td.appendChild(el("span", "visually-hidden", text));
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
    return tbody;
  }

  function draw(data) {
    var checked = new Set();
    table.querySelectorAll("tbody input.select-node:checked").forEach(function (box) {
      checked.add(box.closest("tr").dataset.id);
    });
    table.replaceChild(head(data), table.tHead);
    table.replaceChild(body(data, checked), table.tBodies[0]);
    document.getElementById("matrix-rows").textContent = String(data.rows.length);
    document.getElementById("matrix-cols").textContent = String(data.columns.length);
    document.getElementById("empty").hidden = data.rows.length > 0 && data.columns.length > 0;
    document.dispatchEvent(new CustomEvent("labfleet:selection", { detail: { catalog: data.catalog } }));
  }

  function load() {
    if (loading) { again = true; return; }
    loading = true;
    fetch(table.dataset.source, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(draw)
      .catch(function (err) { live.dataset.state = "retrying"; live.textContent = "live: " + err.message; })
      .then(function () {
        loading = false;
        if (again) { again = false; schedule(); }
      });
  }

  function schedule() {
    if (timer) { return; }
    timer = setTimeout(function () { timer = null; load(); }, 250);
  }

  table.addEventListener("click", function (event) {
    var button = event.target.closest("button.select-failing");
    if (!button) { return; }
    var i = Number(button.dataset.col);
    var th = button.closest("th");
    table.querySelectorAll("tbody tr").forEach(function (tr) {
      var cell = tr.cells[i + 1];
      if (cell && cell.classList.contains("c-failing")) { tr.querySelector("input.select-node").checked = true; }
    });
    document.dispatchEvent(new CustomEvent("labfleet:selection",
      { detail: { lab: th.dataset.lab, step: th.dataset.step } }));
  });

  var source = new EventSource(table.dataset.stream);
  source.addEventListener("open", function () { live.dataset.state = "open"; live.textContent = "live"; });
  source.addEventListener("error", function () {
    live.dataset.state = "retrying";
    live.textContent = "live: reconnecting\u2026";
  });
  source.addEventListener("tiles", function (event) {
    // Any change of a tile (a check, a reset, a node going offline) may change the matrix: re-read it.
    // A (re)connection's first message is every tile: re-read too, something may have moved meanwhile.
    if (event.data) { schedule(); }
  });
})();
