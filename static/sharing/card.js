// The printable card's "Print" button (no inline script: the CSP forbids it).
"use strict";
(function () {
  const button = document.getElementById("print-card");
  if (!button) return;
  button.hidden = false;
  button.addEventListener("click", () => window.print());
})();
