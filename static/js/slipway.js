// Slipway's only script besides htmx: confirmations and live slider values, from data attributes (no inline
// JavaScript, so the Content-Security-Policy can forbid it).
//   data-confirm="Roll {version} back?" on a form or a submit button: asks first; {name} is the form field's value.
//   data-output="element-id" on an <input type="range">: shows its value there, with data-suffix (default "%").
//   Live views (htmx's WebSocket extension): while a page's socket is down the body has the class "live-down"
//   (the CSS shows "Reconnecting…"); the server sends the current state again when it reconnects.
(function () {
  "use strict";
  function message(text, form) {
    return text.replace(/\{([a-z_]+)\}/g, function (_, name) {
      var field = form && form.elements[name];
      if (!field) return "";
      if (field.value !== undefined && field.value !== "") return field.value;
      var checked = form.querySelector('[name="' + name + '"]:checked');
      return checked ? checked.value : "";
    });
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-confirm], input[data-confirm]");
    if (button && !window.confirm(message(button.dataset.confirm, button.form))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(message(form.dataset.confirm, form))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
  document.addEventListener("input", function (event) {
    var input = event.target;
    var id = input.dataset && input.dataset.output;
    var output = id && document.getElementById(id);
    if (output) output.value = input.value + (input.dataset.suffix === undefined ? "%" : input.dataset.suffix);
  });
  function live(up) {
    return function () { document.body.classList.toggle("live-down", !up); };
  }
  document.addEventListener("htmx:wsOpen", live(true));
  document.addEventListener("htmx:wsClose", live(false));
  document.addEventListener("htmx:wsError", live(false));
})();
