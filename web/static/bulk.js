// Bulk actions of the matrix and the room: select machines, run check / solve / reset on them through
// POST /bulk (the same command service as the JSON API), confirm destructive ones in a <dialog>, and follow
// each node's result. Node text (names, reasons, errors) is only ever set with textContent.
(function () {
  "use strict";
  var root = document.getElementById("bulk");
  if (!root) { return; }
  var action = document.getElementById("bulk-action");
  var labSelect = document.getElementById("bulk-lab");
  var stepSelect = document.getElementById("bulk-step");
  var go = document.getElementById("bulk-go");
  var count = document.getElementById("bulk-count");
  var dialog = document.getElementById("bulk-confirm");
  var results = document.getElementById("bulk-results");
  var list = document.getElementById("bulk-list");
  var summary = document.getElementById("bulk-summary");
  var catalog = {};  // lab -> steps
  var labs = [];  // the labs in the catalog's order
  var VERB = { "lab.check": "Check", "lab.solve": "Solve", "lab.reset": "Reset" };

  function option(select, value, text) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    select.appendChild(o);
  }

  function setCatalog(pairs) {  // [[lab, [step, ...]], ...]
    catalog = {};
    labs = (pairs || []).map(function (pair) { catalog[pair[0]] = pair[1]; return pair[0]; });
    var keep = labSelect.value;
    labSelect.textContent = "";
    labs.forEach(function (lab) { option(labSelect, lab, lab); });
    if (keep && catalog[keep]) { labSelect.value = keep; }
    fillSteps();
  }

  function fillSteps() {
    var keep = stepSelect.value;
    stepSelect.textContent = "";
    option(stepSelect, "", action.value === "lab.reset" ? "(the start)" : "(every step)");
    (catalog[labSelect.value] || []).forEach(function (step) { option(stepSelect, step, step); });
    stepSelect.value = keep;
    if (stepSelect.value !== keep) { stepSelect.value = ""; }
    recount();
  }

  function boxes() {
    return Array.prototype.filter.call(document.querySelectorAll("input.select-node"), function (box) {
      var holder = box.closest("[data-id]");
      return holder && holder.dataset.id.indexOf("provision-") !== 0;
    });
  }

  function shown(box) { return !box.closest("[hidden]"); }

  function selected() {
    return boxes().filter(function (box) { return box.checked && shown(box); })
      .map(function (box) { return box.closest("[data-id]").dataset.id; });
  }

  var failingButton = document.getElementById("select-failing");  // the room only
  var note = document.getElementById("bulk-note");

  function relabelFailing() {
    if (!failingButton) { return; }
    var lab = labSelect.value, step = stepSelect.value;
    failingButton.disabled = !(lab && step);
    failingButton.textContent = lab && step ? "Select everyone failing " + lab + " / " + step
      : "Select everyone failing (pick a step)";
  }

  // "Select everyone failing <lab> / <step>" in the room: who fails it comes from the matrix's JSON
  // (/matrix/data, the same reading as the matrix page); the selection becomes exactly those attendees.
  function selectFailing() {
    var lab = labSelect.value, step = stepSelect.value;
    if (!lab || !step) { return; }
    failingButton.disabled = true;
    fetch(failingButton.dataset.matrix, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)); })
      .then(function (data) {
        var col = -1;
        data.columns.forEach(function (c, i) { if (c.lab === lab && c.step === step) { col = i; } });
        var failing = new Set();
        if (col >= 0) {
          data.rows.forEach(function (row) { if (row.cells[col][0] === "failing") { failing.add(row.id); } });
        }
        var hidden = 0;
        boxes().forEach(function (box) {
          var id = box.closest("[data-id]").dataset.id;
          box.checked = failing.has(id) && shown(box);
          if (failing.has(id) && !shown(box)) { hidden += 1; }
        });
        recount();
        var n = failing.size;
        note.textContent = (n === 1 ? "1 attendee fails " : n + " attendees fail ") + lab + " / " + step +
          (hidden ? " (" + hidden + " hidden by the filter, not selected)" : "") + ".";
      })
      .catch(function (err) { note.textContent = "Could not read who is failing (" + err.message + ")."; })
      .then(relabelFailing);
  }

  function recount() {
    relabelFailing();
    var n = selected().length;
    count.textContent = n + " selected";
    go.textContent = VERB[action.value] + " " + n + (n === 1 ? " machine" : " machines");
    go.disabled = n === 0 || !labSelect.value;
    go.classList.toggle("danger", action.value !== "lab.check");
  }

  function describe(n) {
    var lab = labSelect.value, step = stepSelect.value;
    var who = n + (n === 1 ? " attendee" : " attendees");
    if (action.value === "lab.reset") {
      return "Reset lab " + lab + (step ? " to step " + step : " to its start") + " for " + who +
        "? Their work in this lab is undone.";
    }
    return "Solve " + (step ? "step " + step + " of lab " + lab : "every step of lab " + lab) + " for " + who +
      "? Their machines are changed as if they had done it.";
  }

  function row(command) {
    var li = document.createElement("li");
    li.dataset.node = command.node_id;
    ["node", "attendee", "state", "summary"].forEach(function (f) {
      var span = document.createElement("span");
      span.className = "r-" + f;
      li.appendChild(span);
    });
    return li;
  }

  function show(batch) {
    var items = {};
    Array.prototype.forEach.call(list.children, function (li) { items[li.dataset.node] = li; });
    batch.commands.forEach(function (command) {
      var li = items[command.node_id];
      if (!li) { li = row(command); list.appendChild(li); }
      li.className = "r-" + command.state;
      li.querySelector(".r-node").textContent = command.node;
      li.querySelector(".r-attendee").textContent = command.attendee || "";
      li.querySelector(".r-state").textContent = command.state;
      li.querySelector(".r-summary").textContent = command.summary || "";
    });
    var failed = (batch.states.failed || 0) + (batch.states.expired || 0);
    summary.textContent = batch.done + " of " + batch.total + " done" + (failed ? ", " + failed + " failed" : "") +
      (batch.done < batch.total ? "…" : ".");
  }

  function follow(batchId) {
    var url = root.dataset.results + encodeURIComponent(batchId);
    var tries = 0;
    function poll() {
      tries += 1;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status)); })
        .then(function (batch) {
          show(batch);
          if (batch.done < batch.total && tries < 1200) { setTimeout(poll, 400); }
        })
        .catch(function (err) {
          summary.textContent = "Could not read the results (" + err.message + "); retrying…";
          if (tries < 1200) { setTimeout(poll, 2000); }
        });
    }
    poll();
  }

  function send(ids) {
    var body = { kind: action.value, lab: labSelect.value, step: stepSelect.value, nodes: ids };
    results.hidden = false;
    list.textContent = "";
    summary.textContent = "Sending to " + ids.length + " machines…";
    document.getElementById("bulk-results-title").textContent =
      VERB[action.value] + " " + labSelect.value + (stepSelect.value ? " / " + stepSelect.value : "") + ": results";
    fetch(root.dataset.issue, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": root.dataset.csrf, Accept: "application/json" },
      body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (answer) { return { ok: r.ok, answer: answer }; });
    }).then(function (reply) {
      if (!reply.ok) {
        summary.textContent = "Refused: " + (reply.answer.detail || reply.answer.error || "error");
        return;
      }
      show({ commands: reply.answer.commands.map(function (c) {
        return { node_id: c.node_id, node: c.node, attendee: "", state: "pending", summary: "" };
      }), states: {}, done: 0, total: reply.answer.commands.length });
      follow(reply.answer.batch_id);
    }).catch(function (err) { summary.textContent = "Could not send: " + err.message; });
  }

  go.addEventListener("click", function () {
    var ids = selected();
    if (!ids.length) { return; }
    if (action.value === "lab.check") { send(ids); return; }
    document.getElementById("bulk-confirm-title").textContent = VERB[action.value] + " " + ids.length +
      (ids.length === 1 ? " attendee?" : " attendees?");
    document.getElementById("bulk-confirm-text").textContent = describe(ids.length);
    document.getElementById("bulk-ok").textContent = VERB[action.value] + " " + ids.length +
      (ids.length === 1 ? " attendee" : " attendees");
    dialog.returnValue = "";
    dialog.onclose = function () { if (dialog.returnValue === "ok") { send(ids); } };
    dialog.showModal();
  });
  document.getElementById("select-all").addEventListener("click", function () {
    boxes().forEach(function (box) { if (shown(box)) { box.checked = true; } });
    recount();
  });
  document.getElementById("select-none").addEventListener("click", function () {
    boxes().forEach(function (box) { box.checked = false; });
    recount();
  });
  document.addEventListener("change", function (event) {
    if (event.target.classList && event.target.classList.contains("select-node")) { recount(); }
  });
  document.addEventListener("labfleet:selection", function (event) {
    var detail = event.detail || {};
    if (detail.catalog) { setCatalog(detail.catalog); }
    if (detail.lab && catalog[detail.lab]) {
      labSelect.value = detail.lab;
      fillSteps();
      if (detail.step) { stepSelect.value = detail.step; }
    }
    recount();
  });
  if (failingButton) { failingButton.addEventListener("click", selectFailing); }
  action.addEventListener("change", fillSteps);
  labSelect.addEventListener("change", fillSteps);
  stepSelect.addEventListener("change", recount);

  function fetchLabs() {
    fetch(root.dataset.labs, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (answer) { setCatalog(answer.catalog); })
      .catch(function () { setCatalog([]); });
  }
  if (root.dataset.catalog) {
    setCatalog(JSON.parse(root.dataset.catalog));
  } else {  // the room: ask which labs the nodes report, and again when the instructor opens the list
    fetchLabs();
    labSelect.addEventListener("focus", fetchLabs);
  }
})();
