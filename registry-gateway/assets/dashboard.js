// registry-gateway dashboard: keeps a copy of the registry up to date from GET /registry/events and
// renders it. No framework; every value goes into the page as text, never as markup.
"use strict";

(function () {
  const STREAM = "/registry/events";
  const TOKEN_KEY = "registry-gateway.read-token";
  const RECENT_TRANSITIONS = 3;
  const EVICTED_KEPT = 10;

  // The registry as the stream last described it.
  const model = {
    store: null,
    services: {}, // name -> service JSON as GET /registry shows it
    received: {}, // replica id -> Date.now() when its JSON arrived (for countdowns)
    stats: {}, // replica id -> last stats entry
    evicted: {}, // service -> evicted replicas seen by this page (newest first)
    statsInterval: null,
  };
  let source = null;
  let retryTimer = null;
  let renderPending = false;

  const $ = (id) => document.getElementById(id);

  // ---- the stream --------------------------------------------------------------------------------

  // The read token: from sessionStorage, or from the form when storage is refused (private mode).
  let memoryToken = "";
  function token() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || memoryToken;
    } catch (_) {
      return memoryToken;
    }
  }

  function setConn(kind, text) {
    const c = $("conn");
    c.dataset.conn = kind;
    c.textContent = text;
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    const t = token();
    source = new EventSource(t ? STREAM + "?access_token=" + encodeURIComponent(t) : STREAM);
    setConn("connecting", "connecting…");
    source.addEventListener("open", () => setConn("live", "live"));
    source.addEventListener("error", () => {
      if (source.readyState === EventSource.CLOSED) {
        diagnose();
      } else {
        setConn("offline", "reconnecting…");
      }
    });
    for (const name of ["snapshot", "registered", "removed", "evicted", "state", "stats"]) {
      source.addEventListener(name, (e) => {
        let data;
        try {
          data = JSON.parse(e.data);
        } catch (_) {
          return;
        }
        apply(name, data);
        scheduleRender();
      });
    }
  }

  // An EventSource does not say why the server refused it: ask the same question with fetch.
  async function diagnose() {
    source.close();
    const t = token();
    try {
      const r = await fetch("/registry", {
        headers: t ? { Authorization: "Bearer " + t } : {},
        cache: "no-store",
      });
      if (r.status === 401) {
        askToken(t ? "That token was refused." : "");
        return;
      }
      setConn("error", "stream refused (HTTP " + r.status + "), retrying");
    } catch (_) {
      setConn("offline", "gateway unreachable, retrying");
    }
    retryTimer = setTimeout(connect, 3000);
  }

  function askToken(error) {
    setConn("token", "read token needed");
    $("token-error").textContent = error;
    $("token-form").hidden = false;
    $("token").focus();
  }

  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token").value.trim();
    if (!value) return;
    memoryToken = value;
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch (_) {
      // Storage refused: the token lives until this page closes.
    }
    $("token").value = "";
    $("token-form").hidden = true;
    connect();
  });

  // ---- the model ---------------------------------------------------------------------------------

  function service(name) {
    if (!model.services[name]) {
      model.services[name] = { replicas: [], preserving_until_unix_ms: null, retries_refused_by_budget: 0 };
    }
    return model.services[name];
  }

  function upsert(name, replica) {
    const s = service(name);
    const i = s.replicas.findIndex((r) => r.id === replica.id);
    if (i >= 0) s.replicas[i] = replica;
    else s.replicas.push(replica);
    model.received[replica.id] = Date.now();
  }

  function drop(name, id) {
    const s = model.services[name];
    if (s) s.replicas = s.replicas.filter((r) => r.id !== id);
    delete model.received[id];
    delete model.stats[id];
  }

  function setRegistry(registry) {
    model.store = registry.store || null;
    model.services = registry.services || {};
    model.received = {};
    const now = Date.now();
    for (const s of Object.values(model.services)) {
      for (const r of s.replicas || []) model.received[r.id] = now;
    }
  }

  function apply(name, data) {
    switch (name) {
      case "snapshot":
        setRegistry(data);
        break;
      case "registered":
      case "state":
        upsert(data.service, data.replica);
        break;
      case "removed":
        drop(data.service, data.replica.id);
        break;
      case "evicted": {
        const r = data.replica;
        const list = (model.evicted[data.service] = model.evicted[data.service] || []);
        list.unshift({
          id: r.id,
          address: r.address,
          reason: data.reason || "",
          evicted_at_unix_ms: Date.now(),
          counters: { requests: r.requests, failures: r.failures, consecutive_failures: r.consecutive_failures },
          transitions: r.transitions || [],
        });
        list.length = Math.min(list.length, EVICTED_KEPT);
        drop(data.service, r.id);
        break;
      }
      case "stats":
        // The registry comes again with the rates: leases renewed by heartbeats, breakers turned half-open
        // by the clock and self-preservation holds change without a change event.
        if (data.registry) setRegistry(data.registry);
        model.stats = {};
        for (const s of data.replicas || []) model.stats[s.id] = s;
        break;
    }
  }

  // ---- formatting --------------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k.startsWith("data-")) e.setAttribute(k, String(v));
      else if (k === "title") e.title = v;
      else e.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "–";
    ms = Math.max(0, ms);
    if (ms < 1000) return Math.round(ms) + " ms";
    const s = ms / 1000;
    if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + " min " + Math.round(s % 60) + " s";
    const h = Math.floor(m / 60);
    return h + " h " + (m % 60) + " min";
  }

  function ago(unixMs) {
    return unixMs ? duration(Date.now() - unixMs) + " ago" : "";
  }

  // A server-side countdown or age, moved on by the time since its replica's JSON arrived.
  function since(id) {
    return Date.now() - (model.received[id] || Date.now());
  }

  function rate(x) {
    if (x === null || x === undefined) return "–";
    return x >= 100 ? Math.round(x).toString() : x.toFixed(1);
  }

  function percent(x) {
    if (x === null || x === undefined) return "–";
    return (x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0) + " %";
  }

  function stateLabel(s) {
    return s === "half_open" ? "half-open" : s || "?";
  }

  // ---- rendering ---------------------------------------------------------------------------------

  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    setTimeout(() => {
      renderPending = false;
      render();
    }, 50);
  }

  function transitions(list) {
    if (!Array.isArray(list) || list.length === 0) return el("span", { class: "sub" }, "–");
    const recent = list.slice(-RECENT_TRANSITIONS).reverse();
    return el(
      "ol",
      { class: "transitions" },
      recent.map((t) =>
        el(
          "li",
          {
            class: "to-" + t.to,
            title: new Date(t.at_unix_ms).toLocaleString() + (t.reason ? " — " + t.reason : ""),
          },
          stateLabel(t.from) + " → " + stateLabel(t.to) + " · " + ago(t.at_unix_ms) + (t.reason ? " · " + t.reason : "")
        )
      )
    );
  }

  function stateCell(r) {
    const sub = [];
    if (r.state_since_ms_ago !== undefined && r.state_since_ms_ago !== null) {
      sub.push("for " + duration(r.state_since_ms_ago + since(r.id)));
    }
    if (r.next_probe_in_ms !== undefined && r.next_probe_in_ms !== null) {
      const left = r.next_probe_in_ms - since(r.id);
      sub.push(left > 0 ? "probe in " + duration(left) : "probe due");
    }
    return el(
      "td",
      {},
      el("span", { class: "badge state-" + r.state }, stateLabel(r.state)),
      sub.length ? el("div", { class: "sub" }, sub.join(" · ")) : null
    );
  }

  function leaseCell(r) {
    if (r.origin === "static") return el("td", { class: "num sub" }, "static");
    if (r.lease_expires_in_ms !== undefined) {
      if (r.lease_expires_in_ms === null) return el("td", { class: "num sub" }, "–");
      const left = r.lease_expires_in_ms - since(r.id);
      return el(
        "td",
        { class: "num" + (left <= 0 ? " bad" : "") },
        left > 0 ? duration(left) : "expired",
        el("div", { class: "sub" }, r.preserved ? "preserved" : left > 0 ? "left" : "")
      );
    }
    // Without lease_expires_in_ms: the last heartbeat's age is all there is.
    if (r.last_heartbeat_ms_ago === null || r.last_heartbeat_ms_ago === undefined) {
      return el("td", { class: "num sub" }, "–");
    }
    return el(
      "td",
      { class: "num" },
      duration(r.last_heartbeat_ms_ago + since(r.id)) + " ago",
      el("div", { class: "sub" }, r.preserved ? "preserved" : "last heartbeat")
    );
  }

  function replicaRow(r) {
    const st = model.stats[r.id] || {};
    const lifetime = r.requests ? r.failures / r.requests : null;
    const why = r.state_reason || (r.state !== "closed" ? r.last_failure : null);
    return el(
      "tr",
      { class: "replica", "data-id": r.id, "data-address": r.address, "data-state": r.state },
      stateCell(r),
      el(
        "td",
        {},
        el("div", { class: "mono" }, r.address),
        el(
          "div",
          { class: "sub" },
          [r.origin, r.protocol, "id " + String(r.id).slice(0, 8)].filter(Boolean).join(" · ")
        )
      ),
      el("td", { class: "num" }, rate(st.requests_per_s)),
      el(
        "td",
        { class: "num" + (st.error_rate > 0 ? " bad" : "") },
        percent(st.error_rate),
        el("div", { class: "sub" }, "all " + percent(lifetime))
      ),
      el(
        "td",
        { class: "num" },
        String(r.requests ?? 0),
        el("div", { class: "sub" }, (r.failures ?? 0) + " failed" + (r.consecutive_failures ? ", " + r.consecutive_failures + " in a row" : ""))
      ),
      leaseCell(r),
      el(
        "td",
        { class: "reason" },
        why || (r.last_failure ? null : el("span", { class: "sub" }, "–")),
        r.last_failure && !(why || "").includes(r.last_failure)
          ? el("div", { class: "sub" }, "last failure: " + r.last_failure)
          : null
      ),
      el("td", {}, transitions(r.transitions))
    );
  }

  function evictedList(name, svc) {
    const seen = new Set();
    const all = [];
    for (const e of [...(svc.evicted || []), ...(model.evicted[name] || [])]) {
      if (seen.has(e.id)) continue;
      seen.add(e.id);
      all.push(e);
    }
    if (all.length === 0) return null;
    all.sort((a, b) => (b.evicted_at_unix_ms || 0) - (a.evicted_at_unix_ms || 0));
    return el(
      "div",
      { class: "evicted" },
      el("h3", {}, "Evicted"),
      el(
        "ul",
        {},
        all.slice(0, EVICTED_KEPT).map((e) => {
          const c = e.counters || {};
          const last = Array.isArray(e.transitions) && e.transitions.length ? e.transitions[e.transitions.length - 1] : null;
          return el(
            "li",
            { "data-id": e.id, "data-address": e.address, "data-state": "evicted" },
            el("span", { class: "mono addr" }, e.address),
            " — " + (e.reason || "evicted"),
            el(
              "span",
              { class: "sub" },
              " · " + ago(e.evicted_at_unix_ms) +
                (c.requests !== undefined ? " · " + c.requests + " requests, " + (c.failures || 0) + " failed" : "") +
                (last ? " · last " + stateLabel(last.from) + " → " + stateLabel(last.to) : "")
            )
          );
        })
      )
    );
  }

  function serviceSection(name, svc) {
    const replicas = [...(svc.replicas || [])].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    const count = (s) => replicas.filter((r) => r.state === s).length;
    const states = [
      count("closed") + " closed",
      count("half_open") ? count("half_open") + " half-open" : null,
      count("open") ? count("open") + " open" : null,
    ].filter(Boolean);
    return el(
      "section",
      { class: "service", "data-service": name },
      el(
        "h2",
        {},
        name,
        el("span", { class: "meta" }, replicas.length + (replicas.length === 1 ? " replica" : " replicas") + " · " + states.join(" · ")),
        svc.preserving_until_unix_ms
          ? el("span", { class: "warn" }, "self-preservation: leases held for " + duration(svc.preserving_until_unix_ms - Date.now()))
          : null,
        svc.retries_refused_by_budget ? el("span", { class: "meta" }, svc.retries_refused_by_budget + " retries refused by budget") : null
      ),
      replicas.length
        ? el(
            "table",
            {},
            el(
              "thead",
              {},
              el(
                "tr",
                {},
                el("th", { class: "c-state" }, "state"),
                el("th", { class: "c-replica" }, "replica"),
                el("th", { class: "c-rate num", title: "attempts per second over the last stats interval" }, "req/s"),
                el("th", { class: "c-errors num", title: "failed share of the last interval; below: since registration" }, "errors"),
                el("th", { class: "c-requests num" }, "requests"),
                el("th", { class: "c-lease num", title: "time left on the lease; static replicas have none" }, "lease"),
                el("th", { class: "c-why" }, "why"),
                el("th", { class: "c-transitions" }, "recent transitions")
              )
            ),
            el("tbody", {}, replicas.map(replicaRow))
          )
        : el("p", { class: "sub empty" }, "no live replica"),
      evictedList(name, svc)
    );
  }

  function render() {
    const names = Object.keys(model.services).sort();
    $("services").replaceChildren(...names.map((n) => serviceSection(n, model.services[n])));
    $("empty").hidden = names.length > 0 || $("conn").dataset.conn !== "live";

    const all = names.flatMap((n) => model.services[n].replicas || []);
    const open = all.filter((r) => r.state === "open").length;
    const half = all.filter((r) => r.state === "half_open").length;
    $("summary").textContent =
      names.length + " services · " + all.length + " replicas" + (open ? " · " + open + " open" : "") + (half ? " · " + half + " half-open" : "");
    const store = $("store");
    if (model.store) {
      store.textContent =
        "store: " + model.store.kind + (model.store.kind === "memory" ? "" : model.store.connected ? " (connected)" : " (unreachable" + (model.store.last_error ? ": " + model.store.last_error : "") + ")");
      store.dataset.ok = String(model.store.connected !== false);
    }
  }

  // Countdowns and ages move on between events.
  setInterval(render, 1000);
  connect();
})();
