// Slipway's only script besides htmx: confirmations and live slider values, from data attributes (no inline
// JavaScript, so the Content-Security-Policy can forbid it).
//   data-confirm="Roll {version} back?" on a form or a submit button: asks first; {name} is the form field's value.
//   data-output="element-id" on an <input type="range">: shows its value there, with data-suffix (default "%").
//   Live views (htmx's WebSocket extension): while a page's socket is down the body has the class "live-down"
//   (the CSS shows "Reconnecting…"); the server sends the current state again when it reconnects.
//   A pushed partial never loses what someone is typing: fields they changed keep their value, and the field
//   they are in keeps the focus, in the partial that replaces them; an open <details> (a log being read) stays open;
//   a form showing errors is not replaced at all until it is sent again; a section with a form being sent is not
//   replaced, and the page's state is asked for again once the form's answer is in.
//   A form refused over htmx comes back with its errors (400 + HX-Retarget) and is swapped in like a success.
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
  function changed(field) {
    if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
    if (field.tagName === "SELECT") {
      return Array.prototype.some.call(field.options, function (option) { return option.selected !== option.defaultSelected; });
    }
    return field.value !== field.defaultValue;
  }
  function twin(field, fragment) {
    // The same field in the new partial: same form (by its action), same name, and same value for a choice.
    var action = field.form ? field.form.getAttribute("action") : null;
    var named = fragment.querySelectorAll('[name="' + CSS.escape(field.name) + '"]');
    for (var i = 0; i < named.length; i++) {
      var candidate = named[i];
      var form = candidate.closest("form");
      if ((form ? form.getAttribute("action") : null) !== action) continue;
      if ((field.type === "checkbox" || field.type === "radio") && candidate.value !== field.value) continue;
      return candidate;
    }
    return null;
  }
  var refocus = null;
  function sending(element) {
    return element.matches(".htmx-request") || element.querySelector(".htmx-request") !== null;
  }
  // The socket whose message is being swapped in (htmx's WebSocket extension swaps a message's sections at once).
  var socket = null;
  document.addEventListener("htmx:wsBeforeMessage", function (event) { socket = event.detail.socketWrapper; });
  document.addEventListener("htmx:wsAfterMessage", function () { socket = null; });
  // Sections whose push was held back while a form in them was being sent, and the sockets that pushed them. Once
  // every such form has its answer, each socket is asked for its page's state again ({"resync": true}): rendered
  // after the answer, it is at least as new as both, where replaying the held push could undo the answer (a
  // catch-up rendered before the form's write but delivered during its request).
  var held = {}, resyncFrom = [], heldTimer = null;
  function hold(id) {
    held[id] = true;
    if (socket && resyncFrom.indexOf(socket) < 0) resyncFrom.push(socket);
    if (heldTimer === null) heldTimer = window.setInterval(resyncWhenAnswered, 50);
  }
  function resyncWhenAnswered() {
    var waiting = Object.keys(held).some(function (id) {
      var target = document.getElementById(id);
      return target !== null && sending(target);
    });
    if (waiting) return;
    resyncFrom.forEach(function (wrapper) { wrapper.send(JSON.stringify({ resync: true })); });
    held = {};
    resyncFrom = [];
    window.clearInterval(heldTimer);
    heldTimer = null;
  }
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target, fragment = event.detail.fragment;
    if (!target || !fragment || !fragment.querySelectorAll) return;
    // A form showing what was wrong with what someone typed stays as it is until they send it again: a push (the
    // catch-up right after the page loads, or a colleague's change) must not wipe their input and the errors.
    if (target.querySelector('form [aria-invalid="true"], form .field-error, form .error-box')) {
      event.detail.shouldSwap = false;
      return;
    }
    // Nor while a form in it is being sent: htmx tells only the sending element about its answer — once a push has
    // detached it, a refusal (4xx) would never reach the listener below that lets it be swapped in, and the errors
    // would not show. The page's state is asked for again once the answer is in (see `hold`): a push may say more
    // than the answer does (the last approval of a batch answers with the card; the push takes it out of the inbox).
    if (sending(target)) {
      event.detail.shouldSwap = false;
      if (target.id) hold(target.id);
      return;
    }
    target.querySelectorAll("input[name], textarea[name], select[name]").forEach(function (field) {
      var counterpart = field.type === "hidden" ? null : twin(field, fragment);
      if (counterpart && changed(field)) {
        if (field.type === "checkbox" || field.type === "radio") counterpart.checked = field.checked;
        else if (field.tagName === "SELECT") {
          Array.prototype.forEach.call(field.options, function (option, n) {
            if (counterpart.options[n]) counterpart.options[n].selected = option.selected;
          });
        } else counterpart.value = field.value;
      }
      if (counterpart && field === document.activeElement) {
        refocus = { element: counterpart, start: field.selectionStart, end: field.selectionEnd };
      }
    });
  });
  // An open <details> (a step's log someone is reading as it streams) stays open in the partial that replaces it.
  function detailsKey(details) {
    if (details.id) return "#" + details.id;
    var row = details.closest("[data-target][data-action]");
    return row ? row.dataset.target + "/" + row.dataset.action + "/" + (row.dataset.index || "") : null;
  }
  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var target = event.detail.target, fragment = event.detail.fragment;
    if (!target || !fragment || !fragment.querySelectorAll) return;
    var open = {};
    target.querySelectorAll("details[open]").forEach(function (details) {
      var key = detailsKey(details);
      if (key) open[key] = true;
    });
    fragment.querySelectorAll("details").forEach(function (details) {
      var key = detailsKey(details);
      if (key && open[key]) details.open = true;
    });
  });
  document.addEventListener("htmx:oobAfterSwap", function () {
    if (!refocus || !refocus.element.isConnected) return;
    var element = refocus.element;
    element.focus();
    if (refocus.start !== null && refocus.start !== undefined && element.setSelectionRange) {
      try { element.setSelectionRange(refocus.start, refocus.end); } catch (e) { /* not a text field */ }
    }
    refocus = null;
  });
  // A refusal the server placed (HX-Retarget: a form again with its errors beside the fields and what was typed, or
  // an error for the flash) is swapped in like a success; htmx leaves other 4xx answers unswapped.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.status >= 400 && xhr.status < 500 && xhr.getResponseHeader("HX-Retarget")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  // A partial swapped in by an htmx form says what happened: `HX-Trigger: {"slipway:said": "…"}` → the flash.
  document.addEventListener("slipway:said", function (event) {
    var flash = document.getElementById("flash");
    if (!flash) return;
    var line = document.createElement("p");
    line.className = "flash success";
    line.textContent = event.detail && event.detail.value !== undefined ? event.detail.value : "";
    flash.replaceChildren(line);
  });
  document.addEventListener("htmx:wsOpen", live(true));
  document.addEventListener("htmx:wsClose", live(false));
  document.addEventListener("htmx:wsError", live(false));
})();
