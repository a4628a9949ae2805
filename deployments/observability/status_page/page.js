// The aisys status page: log in, keep the token pair in sessionStorage (refreshed before the
// access token expires), then follow /observability/status/events. The server renders and
// escapes every panel; this script only places the fragments it sends.
"use strict";

(function () {
  const body = document.body;
  const base = body.dataset.base;
  const security = body.dataset.security;
  const KEY = "aisys.status.tokens";
  const form = document.getElementById("login");
  const panels = document.getElementById("panels");
  const live = document.getElementById("live");
  const logoutButton = document.getElementById("logout");
  const loginError = document.getElementById("login-error");
  let source = null;
  let lastSeq = null;
  let streams = 0;
  let retryMs = 1000;
  let refreshTimer = null;
  let retryTimer = null;

  function tokens() {
    try {
      return JSON.parse(sessionStorage.getItem(KEY) || "null");
    } catch (e) {
      return null;
    }
  }

  function keep(pair) {
    const lifetime = pair.expires_in * 1000;
    sessionStorage.setItem(KEY, JSON.stringify({
      access: pair.access_token,
      refresh: pair.refresh_token,
      expiresAt: Date.now() + lifetime,
      lifetime: lifetime,
    }));
    scheduleRefresh();
  }

  function scheduleRefresh() {
    const t = tokens();
    if (refreshTimer !== null) clearTimeout(refreshTimer);
    if (!t) return;
    // Renew when a fifth of the lifetime (at most a minute) is left.
    const early = Math.min(60000, t.lifetime / 5);
    refreshTimer = setTimeout(refresh, Math.max(1000, t.expiresAt - Date.now() - early));
  }

  async function refresh() {
    const t = tokens();
    if (!t) return false;
    try {
      const r = await fetch(security + "/refresh", {
        method: "POST",
        headers: {"content-type": "application/json"},
        body: JSON.stringify({refresh_token: t.refresh}),
      });
      if (r.ok) {
        keep(await r.json());
        return true;
      }
      logout("session ended (" + r.status + "); log in again");
    } catch (e) {
      // The network is down: try again shortly; the access token may still be valid.
      refreshTimer = setTimeout(refresh, 5000);
    }
    return false;
  }

  async function authFetch(path, init) {
    for (let attempt = 0; attempt < 2; attempt++) {
      const t = tokens();
      if (!t) throw new Error("not logged in");
      const headers = Object.assign({}, (init && init.headers) || {});
      headers["Authorization"] = "Bearer " + t.access;
      const r = await fetch(path, Object.assign({}, init || {}, {headers: headers}));
      if (r.status !== 401 || attempt > 0 || !(await refresh())) return r;
    }
    throw new Error("unreachable");
  }

  function setLive(text, state) {
    live.textContent = text;
    live.className = "live state-" + state;
    body.dataset.state = state;
  }

  function apply(data) {
    if (data.after_seq !== null && data.after_seq !== undefined) lastSeq = data.after_seq;
    const fragments = data.panels || {};
    for (const name of Object.keys(fragments)) {
      const el = document.getElementById(name);
      if (el && el.dataset.panel === name) el.innerHTML = fragments[name];
    }
  }

  function retryLater(reason) {
    if (!tokens()) return;  // logged out meanwhile
    setLive("reconnecting: " + reason, "reconnecting");
    if (retryTimer !== null) clearTimeout(retryTimer);
    retryTimer = setTimeout(openStream, retryMs);
    retryMs = Math.min(retryMs * 2, 15000);
  }

  async function openStream() {
    retryTimer = null;
    if (source) {
      source.close();
      source = null;
    }
    if (!tokens()) return;
    let ticket;
    try {
      const r = await authFetch(base + "/ticket", {method: "POST"});
      if (!r.ok) return retryLater("ticket refused (" + r.status + ")");
      ticket = await r.json();
    } catch (e) {
      return retryLater(String(e.message || e));
    }
    let url = base + "/events?ticket=" + encodeURIComponent(ticket.ticket);
    if (lastSeq !== null) url += "&after_seq=" + encodeURIComponent(lastSeq);
    const es = new EventSource(url);
    source = es;
    streams += 1;
    body.dataset.streams = String(streams);
    es.addEventListener("snapshot", function (ev) {
      retryMs = 1000;
      const data = JSON.parse(ev.data);
      apply(data);
      setLive("live, updated " + new Date(data.taken_at * 1000).toLocaleTimeString(), "live");
    });
    es.addEventListener("errors", function (ev) {
      apply(JSON.parse(ev.data));
    });
    es.addEventListener("notice", function (ev) {
      live.title = JSON.parse(ev.data).message;
    });
    // The server ends each stream before Serve's request timeout would cut it: open the next
    // one at once, from the last error event this page has (nothing is missed in between).
    es.addEventListener("bye", function (ev) {
      apply(JSON.parse(ev.data));
      es.close();
      if (source === es) openStream();
    });
    // A stream that broke: the ticket is spent, so EventSource's own retry cannot work.
    es.onerror = function () {
      es.close();
      if (source === es) {
        source = null;
        retryLater("stream interrupted");
      }
    };
  }

  function start() {
    form.hidden = true;
    panels.hidden = false;
    logoutButton.hidden = false;
    setLive("connecting", "connecting");
    scheduleRefresh();
    openStream();
  }

  function logout(message) {
    sessionStorage.removeItem(KEY);
    if (source) source.close();
    source = null;
    if (refreshTimer !== null) clearTimeout(refreshTimer);
    if (retryTimer !== null) clearTimeout(retryTimer);
    panels.hidden = true;
    logoutButton.hidden = true;
    form.hidden = false;
    loginError.textContent = message || "";
    setLive("not connected", "login");
  }

  form.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    loginError.textContent = "";
    try {
      const r = await fetch(security + "/token", {
        method: "POST",
        headers: {"content-type": "application/json"},
        body: JSON.stringify({
          grant_type: "password",
          username: document.getElementById("username").value,
          password: document.getElementById("password").value,
        }),
      });
      if (!r.ok) {
        let detail = String(r.status);
        try {
          detail = (await r.json()).detail || detail;
        } catch (e) { /* not JSON */ }
        loginError.textContent = "login failed: " + detail;
        return;
      }
      document.getElementById("password").value = "";
      keep(await r.json());
      start();
    } catch (e) {
      loginError.textContent = "login failed: " + String(e.message || e);
    }
  });

  logoutButton.addEventListener("click", function () {
    logout("");
  });

  if (tokens()) start();
})();
