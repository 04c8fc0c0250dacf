// The provisioning page: upload an inventory (its text and the key files it names) and start a run, follow
// each host every 1.5 s, retry the failed hosts, cancel, tear down (both confirmed in a <dialog> naming how
// many hosts), import and assign attendees. Every POST carries the X-CSRFToken header. Host, task, message
// and attendee text is only ever set with textContent.
(function () {
  "use strict";
  var root = document.getElementById("prov");
  if (!root) { return; }
  var csrf = root.dataset.csrf;
  var POLL_MS = 1500;
  var latest = null;
  var dialog = document.getElementById("prov-confirm");

  function $(id) { return document.getElementById(id); }

  function cell(row, text, cls) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    if (cls) { td.className = cls; }
    row.appendChild(td);
    return td;
  }

  function say(target, text, bad) {
    target.textContent = text;
    target.classList.toggle("error", !!bad);
  }

  // The API's error body {error, detail, field}: say which field (file line / key) is at fault.
  function problem(status, body) {
    if (body && body.detail) {
      var named = !body.field || body.detail.indexOf(body.field) >= 0;
      return (named ? "" : body.field + ": ") + body.detail;
    }
    return "the controller answered " + status;
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, "Accept": "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (data) {
        if (!response.ok) { throw new Error(problem(response.status, data)); }
        return data;
      });
    });
  }

  function readFile(file) {
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () { resolve(String(reader.result)); };
      reader.onerror = function () { reject(new Error("cannot read " + file.name)); };
      reader.readAsText(file);
    });
  }

  function escapeRe(text) { return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

  // Each key file goes under every name the inventory writes for it (`keys/room.key` for room.key) and its
  // own name: the API matches keys by the name as written in the inventory.
  function keyNames(content, fileName) {
    var names = [fileName];
    var re = new RegExp("[^\\s,:{}\\[\\]\"'=]*" + escapeRe(fileName) + "(?=[\\s,}\\]\"']|$)", "gm");
    var found;
    while ((found = re.exec(content)) !== null) {
      if (names.indexOf(found[0]) < 0 && found[0].slice(-fileName.length - 1, -fileName.length).match(/^\/?$/)) {
        names.push(found[0]);
      }
    }
    return names;
  }

  function inventoryBody(playbook) {
    var inv = $("inv-file").files[0];
    if (!inv) { return Promise.reject(new Error("inventory: choose the inventory file")); }
    var keyFiles = Array.prototype.slice.call($("key-files").files);
    return readFile(inv).then(function (content) {
      return Promise.all(keyFiles.map(readFile)).then(function (texts) {
        var keys = {};
        keyFiles.forEach(function (file, i) {
          keyNames(content, file.name).forEach(function (name) { keys[name] = texts[i]; });
        });
        var body = { driver: "static", playbook: playbook,
                     inventory: { path: inv.name, content: content, keys: keys } };
        var forks = $("forks").value;
        if (forks) { body.forks = parseInt(forks, 10); }
        return body;
      });
    });
  }

  function confirmIt(title, text, okText) {
    $("prov-confirm-title").textContent = title;
    $("prov-confirm-text").textContent = text;
    $("prov-ok").textContent = okText;
    dialog.returnValue = "";
    dialog.showModal();
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function once() {
        dialog.removeEventListener("close", once);
        resolve(dialog.returnValue === "ok");
      });
    });
  }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  $("start-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var result = $("start-result");
    say(result, "Starting…");
    inventoryBody("site").then(function (body) { return post(root.dataset.start, body); })
      .then(function (run) {
        say(result, "Run " + run.id + " started on " + plural(run.hosts.length, "host") + ".");
        showRun(run);
        refresh();
      })
      .catch(function (err) { say(result, "Not started: " + err.message, true); });
  });

  $("teardown-go").addEventListener("click", function () {
    var result = $("start-result");
    var body;
    inventoryBody("teardown").then(function (made) {
      body = made;
      return post(root.dataset.check, made);
    }).then(function (checked) {
      var n = checked.hosts.length;
      return confirmIt("Tear down " + plural(n, "host") + "?",
        "Remove the lab setup, the attendee account and the agent from " + plural(n, "host") +
        " of " + body.inventory.path + " and retire their nodes. Attendees on them lose their machine.",
        "Tear down " + plural(n, "host"));
    }).then(function (ok) {
      if (!ok) { say(result, "Teardown not started."); return null; }
      return post(root.dataset.start, body).then(function (run) {
        say(result, "Teardown run " + run.id + " started on " + plural(run.hosts.length, "host") + ".");
        showRun(run);
        refresh();
      });
    }).catch(function (err) { say(result, "Not started: " + err.message, true); });
  });

  $("retry-go").addEventListener("click", function () {
    var result = $("start-result");
    var playbook = latest ? latest.playbook : "site";
    post(root.dataset.start, { retry_failed: true, playbook: playbook }).then(function (run) {
      say(result, "Retrying " + plural(run.hosts.length, "failed host") + " (run " + run.id + ").");
      showRun(run);
      refresh();
    }).catch(function (err) { say(result, "Not retried: " + err.message, true); });
  });

  $("cancel-go").addEventListener("click", function () {
    if (!latest) { return; }
    var run = latest;
    var open = run.hosts.filter(function (h) { return h.state === "pending" || h.state === "running"; }).length;
    confirmIt("Cancel this run?",
      "Stop run " + run.id + " (" + run.playbook + "): " + plural(open, "host") + " of " + run.hosts.length +
      " not finished yet will be left where they stopped.", "Cancel " + plural(open, "host"))
      .then(function (ok) {
        if (!ok) { return null; }
        return post(root.dataset.cancel.replace("RUN", encodeURIComponent(run.id)), {}).then(function (done) {
          say($("start-result"), "Run " + done.id + ": " + (done.state === "cancelled" ? "cancelled." : "cancel asked."));
          showRun(done);
        });
      }).catch(function (err) { say($("start-result"), "Not cancelled: " + err.message, true); });
  });

  function progress(h, total) {
    var done = h.tasks_done || 0;
    return total ? done + " / " + total + " tasks" : done + " tasks";
  }

  function showRun(run) {
    latest = run;
    var rows = $("hosts");
    rows.textContent = "";
    $("run-id").textContent = run ? run.id : "";
    $("run-state").textContent = run ? run.state + (run.cancel_requested && run.state === "running" ? " (cancel asked)" : "") : "none yet";
    $("run-state").dataset.state = run ? run.state : "";
    $("run-playbook").textContent = run ? run.playbook : "";
    var error = $("run-error");
    error.hidden = !(run && run.error);
    error.textContent = run && run.error ? run.error : "";
    var open = run && (run.state === "pending" || run.state === "running");
    $("cancel-go").disabled = !open;
    $("retry-go").disabled = !run || open || !run.hosts.some(function (h) {
      return h.state === "failed" || h.state === "unreachable" || h.state === "cancelled";
    });
    if (!run) { $("run-summary").textContent = ""; return; }
    var counts = {};
    run.hosts.forEach(function (h) { counts[h.state] = (counts[h.state] || 0) + 1; });
    $("run-summary").textContent = Object.keys(counts).sort().map(function (s) { return counts[s] + " " + s; }).join(", ");
    run.hosts.forEach(function (h) {
      var tr = document.createElement("tr");
      tr.dataset.host = h.host;
      tr.className = "host-" + h.state;
      cell(tr, h.host, "name");
      cell(tr, h.address);
      cell(tr, h.state, "word state").dataset.state = h.state;
      cell(tr, progress(h, run.tasks_total));
      cell(tr, h.failed_task || h.current_task || "", "task");
      cell(tr, h.message || "", "message");
      rows.appendChild(tr);
    });
  }

  function showRuns(list) {
    var ul = $("runs");
    ul.textContent = "";
    list.forEach(function (run) {
      var li = document.createElement("li");
      li.textContent = run.created_at.slice(0, 19).replace("T", " ") + " · " + run.playbook + " · " + run.state +
        " · " + run.id + (run.retry_of ? " (retry)" : "");
      ul.appendChild(li);
    });
  }

  function option(select, value, text) {
    var o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    select.appendChild(o);
  }

  function showAttendees(list, freeNodes) {
    var rows = $("attendees");
    rows.textContent = "";
    list.forEach(function (a) {
      var tr = document.createElement("tr");
      cell(tr, a.name, "name");
      cell(tr, a.email);
      cell(tr, a.node || "(not assigned)", a.node ? "node" : "hint");
      cell(tr, a.has_access_code ? "issued" : "not issued");
      rows.appendChild(tr);
    });
    var who = $("assign-attendee"), where = $("assign-node");
    var keepWho = who.value, keepWhere = where.value;
    who.textContent = "";
    where.textContent = "";
    option(who, "", "(everyone unassigned, round-robin)");
    option(where, "", "(the next free node)");
    list.forEach(function (a) { option(who, a.email, a.name + " <" + a.email + ">" + (a.node ? " on " + a.node : "")); });
    freeNodes.forEach(function (name) { option(where, name, name); });
    who.value = keepWho;
    where.value = keepWhere;
  }

  function setLive(state, text) {
    var live = $("live");
    live.dataset.state = state;
    live.textContent = text;
  }

  var timer = null;
  function refresh() {
    if (timer) { clearTimeout(timer); }
    return fetch(root.dataset.state, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      })
      .then(function (state) {
        showRun(state.latest);
        showRuns(state.runs);
        showAttendees(state.attendees, state.free_nodes);
        setLive("open", "live");
      })
      .catch(function () { setLive("error", "live: reconnecting…"); })
      .then(function () { timer = setTimeout(refresh, POLL_MS); });
  }

  $("import-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var file = $("att-file").files[0];
    var result = $("att-result");
    if (!file) { say(result, "csv: choose the attendee list", true); return; }
    readFile(file).then(function (text) { return post(root.dataset.import, { csv: text, source: file.name }); })
      .then(function (report) {
        var parts = ["Imported " + plural(report.created, "attendee")];
        if (report.duplicates && report.duplicates.length) {
          parts.push("skipped " + report.duplicates.length + " already there (" +
            report.duplicates.map(function (d) { return d.email || JSON.stringify(d); }).join(", ") + ")");
        }
        say(result, parts.join("; ") + ".");
        refresh();
      })
      .catch(function (err) { say(result, "Not imported: " + err.message, true); });
  });

  $("assign-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var result = $("att-result");
    var body = {};
    if ($("assign-attendee").value || $("assign-node").value) {
      body = { attendee: $("assign-attendee").value || null, node: $("assign-node").value || null };
    }
    post(root.dataset.assign, body).then(function (answer) {
      var text = answer.assigned.length
        ? "Assigned " + answer.assigned.map(function (p) { return p.attendee + " → " + p.node; }).join(", ")
        : "Nobody assigned";
      if (answer.unassigned.length) { text += "; no free node for " + answer.unassigned.join(", "); }
      say(result, text + ".");
      $("assign-attendee").value = "";
      $("assign-node").value = "";
      refresh();
    }).catch(function (err) { say(result, "Not assigned: " + err.message, true); });
  });

  refresh();
}());
