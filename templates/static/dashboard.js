// nself jobs dashboard: refreshes pages that ask for it (body data-refresh = seconds)
// and requests confirmation before submitting forms marked data-confirm. Every page also works without it.
(function () {
  "use strict";

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  var seconds = parseInt(document.body.getAttribute("data-refresh"), 10);
  if (!seconds || seconds < 1) {
    return;
  }
  var stamp = document.getElementById("refreshed");

  function busy() {
    // Never replace the page while the user is typing in a form or reading a popup.
    var active = document.activeElement;
    return document.hidden || (active && active.closest("form") && active.matches("input, select, textarea"));
  }

  function refresh() {
    if (busy()) {
      return;
    }
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok || response.redirected) {
          throw new Error("refresh request returned HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("content");
        var current = document.getElementById("content");
        if (fresh && current && !busy()) {
          current.replaceWith(fresh);
          if (stamp) {
            stamp.textContent = "Updated " + new Date().toLocaleTimeString() + " ·";
          }
        }
      })
      .catch(function () {
        window.clearInterval(timer);
        if (stamp) {
          stamp.textContent = "Auto-refresh stopped; reload the page ·";
        }
      });
  }

  var timer = window.setInterval(refresh, seconds * 1000);
}());
