// The attendee page: step statuses re-read every 1.5 s, the lab's instructions and hints fetched from
// the machine when a lab is opened, and check / hint / reset sent with the page's CSRF token.
// Node text is set with textContent; only the server's sanitized Markdown HTML goes in as HTML.
(function () {
  "use strict";
  var root = document.getElementById("attendee");
  if (!root) { return; }
  var csrf = root.dataset.csrf;
  var dialog = document.getElementById("confirm");
  var hintLevels = {};
  var LOGIN = "/attendee/login";

  function q(scope, f) { return scope.querySelector("[data-f=" + f + "]"); }

  function api(url, body) {
    var init = { credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body) {
      init.method = "POST";
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRFToken"] = csrf;
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (r) {
      if (r.status === 401) {  // the session ended (a new code was issued, or another login): log in again
        window.location.assign(LOGIN);
        throw new Error("logged out");
      }
      return r.json().then(function (b) {
        if (!r.ok) { throw new Error(b.detail || b.error || ("HTTP " + r.status)); }
        return b;
      });
    });
  }

  // An action is a command to the machine: send it, then ask for its result until it has one.
  function run(body) {
    return api(root.dataset.act, body).then(function (sent) {
      var tries = 0;
      return new Promise(function (resolve, reject) {
        function again() {
          api(root.dataset.commands + sent.command_id).then(function (c) {
            if (c.done) { resolve(c); } else if (++tries > 120) { reject(new Error("your machine did not answer")); } else { setTimeout(again, 500); }
          }, reject);
        }
        again();
      });
    });
  }

  function showStatus(li, status, reason) {
    li.className = "step status-" + status.replace(" ", "-");
    q(li, "status").textContent = status;
    q(li, "reason").textContent = reason || "";
  }

  function applyProgress(data) {
    document.getElementById("node-state").textContent = data.node_state;
    data.labs.forEach(function (lab) {
      var section = root.querySelector("details.lab[data-lab='" + CSS.escape(lab.lab) + "']");
      if (!section) { return; }
      var passed = 0;
      lab.steps.forEach(function (s) {
        var li = section.querySelector("li.step[data-step='" + CSS.escape(s.step) + "']");
        if (li) { showStatus(li, s.status, s.reason); }
        if (s.status === "passed") { passed += 1; }
      });
      q(section, "tally").textContent = passed + " of " + lab.steps.length + " passed";
    });
  }

  // The raised hand: its state as the help queue has it (open → claimed "is coming" → reply → resolved).
  var STATES = { open: "waiting for an instructor", claimed: "claimed", resolved: "resolved" };
  function applyHelp(h) {
    var box = document.getElementById("help-state");
    var button = document.getElementById("raise-hand");
    if (!h) { box.hidden = true; return; }
    box.hidden = false;
    box.dataset.state = h.state;
    var text = STATES[h.state] || h.state;
    if (h.state === "claimed" && h.claimed_by) { text = h.claimed_by + " is coming"; }
    if (h.state === "resolved") { text = "resolved" + (h.resolved_by ? " by " + h.resolved_by : ""); }
    document.getElementById("help-state-text").textContent = text;
    document.getElementById("help-asked").textContent =
      (h.lab ? h.lab + (h.step ? " / " + h.step : "") : "") + (h.message ? " — “" + h.message + "”" : "");
    var reply = document.getElementById("help-reply");
    reply.hidden = !h.reply;
    reply.textContent = h.reply ? (h.replied_by || "Instructor") + " replied: " + h.reply : "";
    button.textContent = h.state === "resolved" ? "Raise my hand" : "Update my raised hand";
  }

  function applyMessages(list) {
    var ul = document.getElementById("messages");
    document.getElementById("messages-none").hidden = list.length > 0;
    var key = list.map(function (m) { return m.id + (m.read ? "r" : "u"); }).join();
    if (ul.dataset.key === key) { return; }
    ul.dataset.key = key;
    ul.textContent = "";
    list.forEach(function (m) {
      var li = document.createElement("li");
      var unread = !m.read;
      li.className = "instructor-message kind-" + m.kind + (unread ? " unread" : "");
      li.dataset.id = m.id;
      var head = document.createElement("p");
      head.className = "message-head";
      var who = document.createElement("b");
      who.textContent = (m.kind === "hint" ? "Hint" : "Message") + " from " + (m.sent_by || "your instructor");
      head.appendChild(who);
      var when = document.createElement("time");
      when.dateTime = m.created_at;
      when.textContent = " · " + new Date(m.created_at).toLocaleTimeString();
      head.appendChild(when);
      if (m.lab) {
        var about = document.createElement("span");
        about.textContent = " · " + m.lab + (m.step ? " / " + m.step : "");
        head.appendChild(about);
      }
      if (unread) {
        var badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = "unread";
        head.appendChild(badge);
      }
      li.appendChild(head);
      var body = document.createElement("p");
      body.className = "message-text";
      body.textContent = m.text;
      li.appendChild(body);
      if (unread) {
        // The machine's agent keeps the message until read (as `lab status` marks it); the next
        // state it reports shows it read here.
        var mark = document.createElement("button");
        mark.type = "button";
        mark.className = "mark-read";
        mark.textContent = "Mark read";
        mark.addEventListener("click", function () {
          mark.disabled = true;
          mark.textContent = "Marking read…";
          api("/attendee/messages/" + encodeURIComponent(m.id) + "/read", {}).catch(function (e) {
            mark.disabled = false;
            mark.textContent = "Mark read";
            body.textContent = m.text + " (could not mark it read: " + e.message + ")";
          });
        });
        li.appendChild(mark);
      }
      ul.appendChild(li);
    });
  }

  var watching = document.getElementById("watching");
  function pollTerminal() {
    api(root.dataset.terminalStatus).then(function (t) {
      var names = t.watching || [];
      watching.hidden = names.length === 0;
      watching.dataset.consent = t.consent ? "yes" : "no";
      document.getElementById("watching-text").textContent = names.length === 0 ? "" :
        names.join(", ") + (names.length > 1 ? " are" : " is") + " watching your terminal" +
        (t.consent ? " and may type in it (you gave consent)." : " (read-only: they cannot type without your consent).");
    }).catch(function () { /* the next round tries again */ });
  }

  document.getElementById("raise-hand").addEventListener("click", function () {
    var button = this;
    var result = document.getElementById("help-result");
    var open = root.querySelector("details.lab[open]");
    var body = { message: document.getElementById("help-message").value };
    if (open) { body.lab = open.dataset.lab; }
    button.disabled = true;
    result.textContent = "Raising your hand…";
    api(root.dataset.help, body).then(function (h) {
      result.textContent = "Your hand is up: an instructor sees it in the help queue.";
      document.getElementById("help-message").value = "";
      applyHelp(h);
    }).catch(function (e) { result.textContent = "Could not raise your hand: " + e.message; })
      .then(function () { button.disabled = false; });
  });

  var live = document.getElementById("live");
  var failures = 0;
  function poll() {
    api(root.dataset.progress)
      .then(function (data) {
        failures = 0; live.dataset.state = "open"; live.textContent = "live"; applyProgress(data);
        applyHelp(data.help); applyMessages(data.messages || []); pollTerminal();
      })
      .catch(function () { failures += 1; live.dataset.state = "retrying"; live.textContent = "live: reconnecting…"; })
      .then(function () { setTimeout(poll, failures ? 5000 : 1500); });
  }

  function loadInstructions(section) {
    if (section.dataset.loaded) { return; }
    section.dataset.loaded = "1";
    var result = q(section, "result");
    result.textContent = "Loading the instructions from your machine…";
    run({ action: "instructions", lab: section.dataset.lab }).then(function (c) {
      if (!c.ok) { throw new Error(c.error || "no answer"); }
      result.textContent = "";
      q(section, "lab-title").textContent = c.title ? "· " + c.title : "";
      q(section, "summary").innerHTML = c.summary_html;  // sanitized on the server (nh3)
      c.steps.forEach(function (s) {
        var li = section.querySelector("li.step[data-step='" + CSS.escape(s.step) + "']");
        if (!li) { return; }
        q(li, "title").textContent = s.title;
        q(li, "instructions").innerHTML = s.html;  // sanitized on the server (nh3)
        if (!s.hints) { li.querySelector("button[data-action=hint]").hidden = true; }
      });
    }).catch(function (e) { section.dataset.loaded = ""; result.textContent = "Could not load the instructions: " + e.message; });
  }

  function act(button) {
    var section = button.closest("details.lab");
    var lab = section.dataset.lab;
    var step = button.dataset.step || null;
    var action = button.dataset.action;
    var li = step ? button.closest("li.step") : null;
    var result = q(section, "result");
    var body = { action: action, lab: lab };
    if (step) { body.step = step; }
    if (action === "hint") {
      var key = lab + "/" + step;
      body.level = (hintLevels[key] || 0) + 1;
    }
    button.disabled = true;
    result.textContent = { check: "Checking…", hint: "Asking for a hint…", reset: "Resetting…" }[action];
    run(body).then(function (c) {
      if (!c.ok) { result.textContent = "Your machine said: " + (c.error || c.state); return; }
      if (action === "check") {
        var failed = c.steps.filter(function (s) { return s.status !== "passed" && s.status !== "skipped"; });
        c.steps.forEach(function (s) {
          var target = section.querySelector("li.step[data-step='" + CSS.escape(s.step) + "']");
          if (target) { showStatus(target, s.status, s.reason); }
        });
        result.textContent = failed.length ? "Not yet: " + failed[0].step + " — " + failed[0].reason
                                           : "Passed: well done.";
      } else if (action === "hint") {
        hintLevels[lab + "/" + step] = c.level;
        var hints = q(li, "hints");
        hints.textContent = "";
        var box = document.createElement("div");
        box.className = "hint-box";
        var label = document.createElement("p");
        label.className = "hint-level";
        label.textContent = "Hint " + c.level + " of " + c.of;
        box.appendChild(label);
        var text = document.createElement("div");
        text.innerHTML = c.hint_html;  // sanitized on the server (nh3)
        box.appendChild(text);
        hints.appendChild(box);
        result.textContent = "";
        if (c.level >= c.of) { button.textContent = "No more hints"; button.disabled = true; return; }
        button.textContent = "Show the next hint";
      } else {
        result.textContent = step ? "Reset to " + step + "." : "Reset to its start.";
      }
    }).catch(function (e) { result.textContent = "Could not do that: " + e.message; })
      .then(function () { if (button.textContent !== "No more hints") { button.disabled = false; } });
  }

  root.querySelectorAll("details.lab").forEach(function (section) {
    if (section.open) { loadInstructions(section); }
    section.addEventListener("toggle", function () { if (section.open) { loadInstructions(section); } });
  });
  root.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) { return; }
    if (!button.dataset.confirm) { act(button); return; }
    var section = button.closest("details.lab");
    document.getElementById("confirm-text").textContent = button.dataset.confirm
      .replace("{lab}", section.dataset.lab).replace("{step}", button.dataset.step || "");
    dialog.returnValue = "";
    dialog.onclose = function () { if (dialog.returnValue === "ok") { act(button); } };
    dialog.showModal();
  });
  var copy = document.getElementById("copy-ssh");
  copy.addEventListener("click", function () {
    var input = document.getElementById("ssh");
    input.select();
    var done = function () { copy.textContent = "Copied"; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, function () { copy.textContent = "Select and copy"; });
    } else { copy.textContent = "Selected: press Ctrl+C"; }
  });
  poll();
})();
