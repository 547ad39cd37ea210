"""The approval page's style sheet and script, served from the emulator itself.

Separate files (not inline) so the Content-Security-Policy can say ``'self'`` and
forbid every inline script and style. No fonts, images or libraries from
elsewhere: the page works offline. The script only builds DOM nodes with
``textContent`` (never ``innerHTML``).
"""

__all__ = ["CSS", "JS"]

CSS = """
:root {
  --bg: #f3f4f6; --card: #ffffff; --ink: #111827; --muted: #6b7280; --line: #e5e7eb;
  --accent: #4338ca; --ok: #047857; --ok-bg: #d1fae5; --bad: #b91c1c; --bad-bg: #fee2e2;
  --wait: #92400e; --wait-bg: #fef3c7; --off: #374151; --off-bg: #e5e7eb;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
code, pre, textarea, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
a { color: var(--accent); }
.top {
  display: flex; align-items: center; justify-content: space-between; gap: 1rem;
  padding: .75rem 1.5rem; background: #1f2937; color: #f9fafb;
}
.top a.brand { color: #f9fafb; font-weight: 600; text-decoration: none; letter-spacing: .01em; }
.top .who { display: flex; align-items: center; gap: .75rem; font-size: .875rem; color: #d1d5db; }
.top form { margin: 0; }
.top a.signin { color: #e5e7eb; }
.top button { background: transparent; color: #f9fafb; border: 1px solid #6b7280; padding: .25rem .75rem; }
main { max-width: 860px; margin: 2rem auto; padding: 0 1rem; }
main.wide { max-width: 1100px; }
.card {
  background: var(--card); border: 1px solid var(--line); border-radius: 12px;
  padding: 1.75rem 2rem; box-shadow: 0 1px 3px rgba(0, 0, 0, .06);
}
.eyebrow { margin: 0 0 .25rem; color: var(--muted); font-size: .8rem; text-transform: uppercase; letter-spacing: .06em; }
h1 { margin: 0 0 1rem; font-size: 1.4rem; line-height: 1.3; overflow-wrap: anywhere; }
h1 code { background: #eef2ff; color: var(--accent); padding: .1rem .4rem; border-radius: 6px; }
h2 { font-size: 1rem; margin: 1.5rem 0 .5rem; }
.status {
  display: flex; align-items: baseline; gap: .5rem; flex-wrap: wrap;
  padding: .75rem 1rem; border-radius: 8px; font-weight: 600; margin-bottom: 1.25rem;
}
.status .detail { font-weight: 400; overflow-wrap: anywhere; }
.status-pending { background: var(--wait-bg); color: var(--wait); }
.status-approved { background: var(--ok-bg); color: var(--ok); }
.status-denied { background: var(--bad-bg); color: var(--bad); }
.status-expired, .status-used { background: var(--off-bg); color: var(--off); }
#countdown { font-variant-numeric: tabular-nums; }
dl.facts { display: grid; grid-template-columns: 10rem 1fr; gap: .4rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
pre {
  margin: 0; padding: .75rem 1rem; background: #f9fafb; border: 1px solid var(--line);
  border-radius: 8px; white-space: pre-wrap; overflow-wrap: anywhere; font-size: .85rem;
}
.pair { display: grid; grid-template-columns: repeat(auto-fit, minmax(16rem, 1fr)); gap: 0 1.25rem; }
form.decide { margin-top: 1.75rem; border-top: 1px solid var(--line); padding-top: 1.25rem; }
label { display: block; font-weight: 600; margin: .75rem 0 .25rem; }
.hint { color: var(--muted); font-size: .85rem; margin: 0 0 .25rem; }
input[type=text], input[type=password], textarea {
  width: 100%; padding: .55rem .7rem; border: 1px solid #d1d5db; border-radius: 8px;
  font-size: .95rem; background: #fff; color: var(--ink);
}
textarea { min-height: 5.5rem; font-size: .85rem; }
input:focus, textarea:focus { outline: 2px solid #a5b4fc; border-color: var(--accent); }
.buttons { display: flex; gap: .75rem; margin-top: 1.25rem; }
button {
  font: inherit; font-weight: 600; padding: .6rem 1.4rem; border-radius: 8px;
  border: 1px solid transparent; cursor: pointer;
}
button.approve { background: var(--ok); color: #fff; }
button.deny { background: #fff; color: var(--bad); border-color: #fca5a5; }
button.primary { background: var(--accent); color: #fff; }
button:hover { filter: brightness(1.08); }
.notice { padding: .75rem 1rem; border-radius: 8px; margin: 1rem 0; overflow-wrap: anywhere; }
.notice.error { background: var(--bad-bg); color: var(--bad); }
.notice.info { background: #eef2ff; color: #3730a3; }
.muted { color: var(--muted); }
.panel { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 1rem 1.25rem; margin-bottom: 1.25rem; }
.panel h2 { margin: 0 0 .75rem; }
.panel .count { color: var(--muted); font-weight: 400; }
table { width: 100%; border-collapse: collapse; font-size: .9rem; }
th, td { text-align: left; padding: .45rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; overflow-wrap: anywhere; }
th { color: var(--muted); font-weight: 600; font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; }
td.empty { color: var(--muted); text-align: center; padding: 1rem; }
td.st { font-weight: 600; }
.st-pending { color: var(--wait); } .st-approved { color: var(--ok); } .st-denied { color: var(--bad); }
.st-expired, .st-used { color: var(--muted); }
"""

JS = """
(function () {
  "use strict";

  function fmt(seconds) {
    var s = Math.max(0, Math.ceil(seconds)), m = Math.floor(s / 60), r = s % 60;
    return m > 0 ? m + "m " + (r < 10 ? "0" : "") + r + "s" : r + "s";
  }

  // The approval page: a countdown to expiry (from the emulator's clock, given in seconds),
  // and a reload once the request is no longer pending (decided elsewhere, or expired).
  function approvalPage(card) {
    var el = document.getElementById("countdown");
    if (el) {
      var end = Date.now() + (parseFloat(el.getAttribute("data-remaining")) || 0) * 1000;
      var tick = function () { el.textContent = fmt((end - Date.now()) / 1000); };
      tick();
      setInterval(tick, 1000);
    }
    var url = card.getAttribute("data-poll");
    if (!url || card.getAttribute("data-status") !== "pending") { return; }
    setInterval(function () {
      fetch(url, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (d) { if (d && d.status !== "pending") { window.location.reload(); } })
        .catch(function () {});
    }, 1500);
  }

  function cell(tag, c) {
    var td = document.createElement(tag);
    if (c && c.href) {
      var a = document.createElement("a");
      a.setAttribute("href", c.href);
      a.textContent = c.text;
      td.appendChild(a);
    } else {
      td.textContent = c ? c.text : "";
    }
    if (c && c.cls) { td.className = c.cls; }
    return td;
  }

  function renderPanel(main, p) {
    var section = document.getElementById("panel-" + p.id);
    if (!section) {
      section = document.createElement("section");
      section.id = "panel-" + p.id;
      section.className = "panel";
      main.appendChild(section);
    }
    while (section.firstChild) { section.removeChild(section.firstChild); }
    var h = document.createElement("h2");
    h.textContent = p.title + " ";
    var count = document.createElement("span");
    count.className = "count";
    count.textContent = "(" + p.rows.length + ")";
    h.appendChild(count);
    section.appendChild(h);
    var table = document.createElement("table"), head = document.createElement("tr");
    p.columns.forEach(function (c) { head.appendChild(cell("th", { text: c })); });
    var thead = document.createElement("thead"), tbody = document.createElement("tbody");
    thead.appendChild(head);
    if (p.rows.length === 0) {
      var tr = document.createElement("tr"), td = cell("td", { text: p.empty, cls: "empty" });
      td.setAttribute("colspan", String(p.columns.length));
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
    p.rows.forEach(function (row) {
      var tr = document.createElement("tr");
      row.forEach(function (c) { tr.appendChild(cell("td", c)); });
      tbody.appendChild(tr);
    });
    table.appendChild(thead);
    table.appendChild(tbody);
    section.appendChild(table);
  }

  function dashboard(main) {
    var url = main.getAttribute("data-state"), stamp = document.getElementById("updated");
    setInterval(function () {
      fetch(url, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) {
          if (r.status === 401) { window.location.reload(); return null; }
          return r.ok ? r.json() : null;
        })
        .then(function (state) {
          if (!state) { return; }
          state.panels.forEach(function (p) { renderPanel(main, p); });
          if (stamp) { stamp.textContent = new Date().toLocaleTimeString(); }
        })
        .catch(function () {});
    }, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var card = document.getElementById("permission");
    if (card) { approvalPage(card); }
    var main = document.getElementById("dashboard");
    if (main) { dashboard(main); }
  });
})();
"""
