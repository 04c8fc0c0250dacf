// The node page's live part: re-reads the node every 2 s, renders it with textContent only
// (node text is never parsed as HTML), and sends the actions with the page's CSRF token.
(function () {
  "use strict";
  var root = document.getElementById("node");
  if (!root) { return; }
  var labSelect = document.getElementById("a-lab");
  var stepSelect = document.getElementById("a-step");
  var result = document.getElementById("action-result");
  var dialog = document.getElementById("confirm");
  var view = null;

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text != null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }
  function set(id, text) { document.getElementById(id).textContent = text == null ? "" : String(text); }
  function row(cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (c) { var td = el("td"); if (c instanceof Node) { td.appendChild(c); } else { td.textContent = c; } tr.appendChild(td); });
    return tr;
  }
  function pairs(obj) {
    return Object.keys(obj || {}).filter(function (k) { return obj[k] != null && obj[k] !== false; }).map(function (k) {
      var v = obj[k];
      return k + " " + (v && typeof v === "object" ? JSON.stringify(v) : String(v));
    }).join(" · ");
  }

  function steps() {
    var lab = (view && view.progress || []).filter(function (l) { return l.lab === labSelect.value; })[0];
    return lab ? lab.steps : [];
  }
  function fillSteps() {
    var keep = stepSelect.value;
    while (stepSelect.options.length > 1) { stepSelect.remove(1); }
    steps().forEach(function (s) { stepSelect.add(new Option(s.step, s.step)); });
    stepSelect.value = keep;
    if (stepSelect.value !== keep) { stepSelect.value = ""; }
  }

  function render(v) {
    view = v;
    set("n-name", v.name); set("n-attendee", v.attendee || "(no attendee)");
    set("n-state", v.state); set("n-host", v.hostname || v.address); set("n-address", v.address);
    set("n-kernel", v.kernel); set("n-agent", v.agent_version);
    set("n-beats", v.beats_every + " s" + (v.beats_every > v.heartbeat_interval ? " (stretched: the controller is busy)" : ""));
    var seen = document.getElementById("n-seen");
    seen.setAttribute("datetime", v.last_seen_at || ""); seen.textContent = v.last_seen_at ? v.last_seen_at.slice(11, 19) + " UTC" : "never";
    var labs = v.progress.map(function (l) { return l.lab; });
    var current = Array.prototype.map.call(labSelect.options, function (o) { return o.value; });
    if (labs.join() !== current.join()) {
      var keep = labSelect.value;
      while (labSelect.options.length) { labSelect.remove(0); }
      labs.forEach(function (l) { labSelect.add(new Option(l, l)); });
      if (labs.indexOf(keep) >= 0) { labSelect.value = keep; }
    }
    fillSteps();

    var progress = document.getElementById("progress");
    progress.textContent = "";
    if (!v.progress.length) { progress.appendChild(el("p", "This node reported no labs yet.", "hint")); }
    v.progress.forEach(function (lab) {
      var table = el("table", null, "grid steps");
      table.appendChild(el("caption", lab.lab));
      var head = el("tr"); ["step", "status", "reason", "when"].forEach(function (h) { var th = el("th", h); th.scope = "col"; head.appendChild(th); });
      table.appendChild(el("thead")).appendChild(head);
      var body = table.appendChild(el("tbody"));
      lab.steps.forEach(function (s) {
        var tr = row([s.step, s.status, s.reason, s.at ? s.at.slice(11, 19) : ""]);
        tr.className = "status-" + s.status.replace(" ", "-");
        tr.dataset.step = lab.lab + "/" + s.step;
        body.appendChild(tr);
      });
      progress.appendChild(table);
    });

    var err = document.getElementById("labs-error");
    err.hidden = !v.labs_error; err.textContent = v.labs_error || "";
    var sc = v.seccomp || {};
    set("seccomp", sc.error ? sc.error : (sc.supported ? "supported; actions: " + (sc.actions_avail || []).join(", ") : "not supported by this kernel"));
    var procs = document.getElementById("processes");
    procs.textContent = "";
    (v.processes || []).forEach(function (p) {
      procs.appendChild(row([p.pid, p.comm, p.uid, pairs(p.namespaces), p.pid_ns_depth, pairs(p.seccomp)]));
    });
    if (!procs.children.length) { var tr = row(["none"]); tr.firstChild.colSpan = 6; procs.appendChild(tr); }
    var cgs = document.getElementById("cgroups");
    cgs.textContent = "";
    (v.cgroups || []).forEach(function (c) { cgs.appendChild(row([c.path, pairs(c.files)])); });
    if (!cgs.children.length) { var tr2 = row(["none"]); tr2.firstChild.colSpan = 2; cgs.appendChild(tr2); }

    var history = document.getElementById("history");
    history.textContent = "";
    v.commands.forEach(function (c) {
      var li = el("li", null, "cmd state-" + c.state);
      var summary = el("summary");
      summary.appendChild(el("span", c.issued_at.slice(11, 19), "when"));
      summary.appendChild(el("b", c.kind));
      summary.appendChild(el("span", pairs(c.args), "args"));
      summary.appendChild(el("span", c.state + (c.ok === false ? " ✗" : c.ok ? " ✓" : ""), "word"));
      summary.appendChild(el("span", c.issued_by, "who"));
      var details = el("details");
      details.dataset.id = c.id;
      if (openDetails[c.id]) { details.open = true; }
      details.addEventListener("toggle", function () { openDetails[c.id] = details.open; });
      details.appendChild(summary);
      if (c.error) { details.appendChild(el("pre", c.error, "error")); }
      if (c.output) { details.appendChild(el("pre", JSON.stringify(c.output, null, 2))); }
      li.appendChild(details);
      history.appendChild(li);
    });
  }
  var openDetails = {};

  var live = document.getElementById("live");
  var failures = 0;
  function poll() {
    fetch(root.dataset.live, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (v) { failures = 0; live.dataset.state = "open"; live.textContent = "live"; render(v); })
      .catch(function () { failures += 1; live.dataset.state = "retrying"; live.textContent = "live: retrying…"; })
      .then(function () { setTimeout(poll, failures ? 5000 : 2000); });
  }

  function send(kind) {
    var args = {};
    if (kind.indexOf("lab.") === 0) {
      args.lab = labSelect.value;
      if (stepSelect.value) { args[kind === "lab.reset" ? "to_step" : "step"] = stepSelect.value; }
    }
    result.textContent = "Sending " + kind + "…";
    fetch(root.dataset.act, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": root.dataset.csrf },
      body: JSON.stringify({ kind: kind, args: args })
    }).then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
      .then(function (a) {
        result.textContent = a.ok ? kind + " sent; its result appears in the history below."
                                  : "Refused: " + (a.body.detail || a.body.error);
      })
      .catch(function (e) { result.textContent = "Could not send: " + e.message; });
  }

  labSelect.addEventListener("change", fillSteps);
  document.querySelectorAll("#actions button[data-kind]").forEach(function (button) {
    button.addEventListener("click", function () {
      var kind = button.dataset.kind;
      if (!button.dataset.confirm) { send(kind); return; }
      var text = button.dataset.confirm.replace("{lab}", labSelect.value)
        .replace("{step}", stepSelect.value || (kind === "lab.reset" ? "its start" : "every step"))
        .replace("{node}", view ? view.name : document.getElementById("n-name").textContent);
      document.getElementById("confirm-text").textContent = text;
      dialog.returnValue = "";
      dialog.onclose = function () { if (dialog.returnValue === "ok") { send(kind); } };
      dialog.showModal();
      document.getElementById("confirm-ok").focus();
    });
  });
  poll();
})();
