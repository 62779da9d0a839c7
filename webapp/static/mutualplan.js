/* MutualPlan: small progressive enhancements. Everything works without this file. */
(function () {
  "use strict";
  document.querySelectorAll("[data-print]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () { window.print(); });
  });
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var input = document.getElementById(button.getAttribute("data-copy"));
    if (!input || !navigator.clipboard) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(input.value).then(function () {
        var old = button.textContent;
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = old; }, 1500);
      });
    });
  });
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  /* Editor: ask for a reason only when the due date really moves. */
  document.querySelectorAll("input[data-due]").forEach(function (input) {
    var box = document.getElementById(input.getAttribute("data-due"));
    if (!box) { return; }
    var original = input.hasAttribute("data-was") ? input.getAttribute("data-was") : input.value;
    var sync = function () { box.hidden = input.value === original; };
    sync();
    input.addEventListener("input", sync);
    input.addEventListener("change", sync);
  });
  /* Keep the page where it was after a form round trip. */
  var error = document.getElementById("error");
  if (error && !window.location.hash) { error.scrollIntoView(); }
})();
