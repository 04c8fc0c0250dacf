// The shared terminal in the page: xterm.js (+ fit addon) on a WebSocket to the controller.
// Binary messages are terminal output; text messages are JSON: status, refused, ended.
// Keystrokes go out as {"t":"in","data":...}; the size as {"t":"resize","cols":..,"rows":..}.
// The page reconnects by itself; the controller replays the screen on join.
(function () {
  "use strict";
  var box = document.getElementById("terminal");
  if (!box || !window.Terminal) { return; }
  var role = box.dataset.role;
  var stateEl = document.getElementById("terminal-state");
  var watchersEl = document.getElementById("terminal-watchers");
  var consentEl = document.getElementById("terminal-consent");
  var refusedEl = document.getElementById("terminal-refused");
  var term = new window.Terminal({ cursorBlink: true, convertEol: false, scrollback: 5000,
    fontFamily: "DejaVu Sans Mono, monospace", fontSize: 15 });
  var fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  var ws = null, closedByPage = false, retry = 500, ended = false, elsewhere = 0;
  var state = { status: null };
  window.labfleetTerminal = { term: term, state: state,
    text: function () {  // what the screen shows, for tests and copy
      var b = term.buffer.active, out = [];
      for (var i = 0; i < b.length; i++) { out.push(b.getLine(i).translateToString(true)); }
      return out.join("\n");
    } };

  function send(obj) { if (ws && ws.readyState === 1) { ws.send(JSON.stringify(obj)); } }
  function sendSize() { send({ t: "resize", cols: term.cols, rows: term.rows }); }

  function showStatus(s) {
    state.status = s;
    elsewhere = 0;
    stateEl.textContent = s.agent ? "connected" : "waiting for the machine…";
    var names = s.instructors || [];
    watchersEl.textContent = names.length ? ("watching: " + names.join(", ")) : "";
    box.dataset.watchers = names.join(",");
    box.dataset.consent = s.consent ? "yes" : "no";
    var ask = document.getElementById("terminal-ask");
    if (ask) {  // the attendee: asked here as well as in the terminal (lab consent yes|no)
      ask.hidden = names.length === 0;
      document.getElementById("terminal-allow").hidden = !!s.consent;
      document.getElementById("terminal-deny").hidden = !s.consent;
    }
    if (consentEl) {
      consentEl.textContent = s.consent ? "the attendee lets you type" : "read-only: the attendee has not consented to typing";
      consentEl.classList.toggle("granted", !!s.consent);
    }
  }

  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + box.dataset.ws;
    ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    ws.onopen = function () { retry = 500; stateEl.textContent = "waiting for the machine…"; sendSize(); };
    ws.onmessage = function (ev) {
      if (typeof ev.data !== "string") { term.write(new Uint8Array(ev.data)); return; }
      var msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.t === "status") { showStatus(msg); }
      else if (msg.t === "refused") {
        refusedEl.textContent = "Not sent: " + msg.reason;
        refusedEl.hidden = false;
        box.dataset.refused = String((parseInt(box.dataset.refused || "0", 10)) + 1);
      } else if (msg.t === "elsewhere") { retry = 20; elsewhere += 1; if (elsewhere > 50) { retry = 2000; }
      } else if (msg.t === "ended") { ended = true; stateEl.textContent = "the terminal session ended"; }
    };
    ws.onclose = function () {
      ws = null;
      if (closedByPage) { return; }
      stateEl.textContent = ended ? "the terminal session ended: reconnecting…" : "disconnected: reconnecting…";
      setTimeout(connect, retry);
      retry = elsewhere && elsewhere <= 50 ? 20 : Math.min(retry * 2, 8000);
    };
  }

  // Answers the terminal itself gives to tmux's queries (device attributes, cursor position, focus,
  // colour reports): the attendee's page answers them; a watcher's page must not (never typed input).
  var REPORT = /^(\x1b\[[?>=]?[\d;]*[cnRyt]|\x1b\[[IO]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1bP[\s\S]*\x1b\\)+$/;
  term.onData(function (data) {
    if (role === "instructor" && REPORT.test(data)) { return; }
    if (role === "instructor" && state.status && !state.status.consent) {
      refusedEl.textContent = "Not sent: the attendee has not consented to typing (they run `lab consent yes`).";
      refusedEl.hidden = false;
    } else { refusedEl.hidden = true; }
    send({ t: "in", data: data });  // the controller and the agent decide; the page only says why
  });
  term.onResize(sendSize);
  var allow = document.getElementById("terminal-allow"), deny = document.getElementById("terminal-deny");
  if (allow) { allow.addEventListener("click", function () { send({ t: "consent", value: true }); }); }
  if (deny) { deny.addEventListener("click", function () { send({ t: "consent", value: false }); }); }
  // The box's size decides the terminal's (also once the font is measured, after the first layout).
  if (window.ResizeObserver) { new ResizeObserver(function () { fit.fit(); }).observe(box); }
  else { window.addEventListener("resize", function () { fit.fit(); }); }
  setTimeout(function () { fit.fit(); }, 100);
  window.addEventListener("beforeunload", function () { closedByPage = true; if (ws) { ws.close(); } });
  connect();
  term.focus();
}());
