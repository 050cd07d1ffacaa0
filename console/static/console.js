// Lars console: refreshes every element with data-refresh (seconds) and an id from
// data-refresh-url, by fetching that page and taking the element of the same id. Without
// JavaScript the page works the same, only without the refresh.
"use strict";
document.querySelectorAll("[data-refresh][id]").forEach(function (el) {
  var secs = parseInt(el.dataset.refresh, 10);
  var url = el.dataset.refreshUrl || location.pathname;
  if (!(secs > 0)) return;
  setInterval(function () {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById(el.id);
        if (fresh) el.replaceChildren.apply(el, Array.from(fresh.childNodes));
      })
      .catch(function () { el.classList.add("refresh-failed"); });
  }, secs * 1000);
});
