// Replays one asciicast v2 recording with asciinema-player (from npm, web/package.json).
(function () {
  "use strict";
  var box = document.getElementById("replay");
  if (!box || !window.AsciinemaPlayer) { return; }
  window.labfleetReplay = window.AsciinemaPlayer.create(box.dataset.cast, box, {
    autoPlay: true, speed: 4, idleTimeLimit: 1, fit: "width", terminalFontSize: "14px"
  });
}());
