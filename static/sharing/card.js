// The printable card's "Print" button (no inline script: the CSP forbids it).
const button = document.getElementById('print-card');
if (button) {
  button.hidden = false;
  button.addEventListener('click', () => window.print());
}
