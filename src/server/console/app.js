// The fnhost console: plain JavaScript, no build step, no third-party code. Every read and
// write is a call to the admin API with the credential the user signed in with (kept in
// this tab's sessionStorage, sent as a bearer token). Text from the API is only ever put
// into the page as text (textContent), never as HTML.
"use strict";

const TOKEN = "fnhost-token";
const REFRESH_MS = 2000;
let me = null;
let timer = null;

const $ = (id) => document.getElementById(id);

/// An element with attributes and children (strings become text).
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/// One admin API call; JSON in and out. A 401 signs the user out.
async function api(method, path, body) {
  const headers = { authorization: "Bearer " + sessionStorage.getItem(TOKEN) };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!response.ok) {
    const message = data && data.error ? data.error.message : `${response.status} ${text}`;
    if (response.status === 401) signOut(message);
    throw new ApiError(response.status, message);
  }
  return data;
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

function label(version) {
  return version === "latest" || version === "$LATEST" ? "$LATEST" : `v${version}`;
}

// --- signing in ----------------------------------------------------------------------

async function signIn(token) {
  sessionStorage.setItem(TOKEN, token);
  me = await api("GET", "/v1/whoami");
  $("who").textContent = me.role ? `${me.actor} (${me.role} of ${me.namespace})` : "host admin";
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("nav-nodes").hidden = me.role !== null;
  $("sign-out").hidden = false;
  route();
}

function signOut(reason) {
  sessionStorage.removeItem(TOKEN);
  me = null;
  clearTimeout(timer);
  $("view").replaceChildren();
  $("who").textContent = "";
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = reason || "";
  $("token").focus();
}

// --- pages -----------------------------------------------------------------------------

/// Renders the page the location names, then again every REFRESH_MS while it stays.
async function route() {
  clearTimeout(timer);
  if (!me) return;
  const hash = location.hash || "#/";
  const match = hash.match(/^#\/functions\/([^/]+)$/);
  const page = match ? () => functionPage(decodeURIComponent(match[1]))
    : hash === "#/nodes" ? nodesPage
    : hash === "#/namespaces" ? namespacesPage
    : functionsPage;
  try {
    await page();
  } catch (e) {
    if (!me) return;
    $("view").replaceChildren(el("p", { class: "error", role: "alert" }, e.message));
  }
  if (me && hash === (location.hash || "#/")) timer = setTimeout(route, REFRESH_MS);
}

let search = "";
let page = 0;
const PAGE = 100;
const SVG = "http://www.w3.org/2000/svg";

/// A small line chart of `values` (oldest first), labelled for screen readers.
function sparkline(values, label, color = "#2456d6", width = 120, height = 28) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.setAttribute("class", "spark");
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (v / max) * (height - 4)).toFixed(1)}`);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", color);
  line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  return svg;
}

/// Per-minute values of `field` over the last `minutes` minutes, from usage rows of one
/// function grouped by minute (minutes with no row are 0).
function perMinute(rows, field, minutes) {
  const now = Math.floor(Date.now() / 60000);
  const values = new Array(minutes).fill(0);
  for (const row of rows) {
    const i = minutes - 1 - (now - row.minute);
    if (i >= 0 && i < minutes) values[i] += row[field] || 0;
  }
  return values;
}

async function functionsPage() {
  const [list, usage] = await Promise.all([
    api("GET", "/v1/functions"),
    api("GET", "/v1/usage?by=minute&since=900").catch(() => ({ rows: [] })),
  ]);
  const byName = new Map();
  for (const row of usage.rows) {
    if (!byName.has(row.function)) byName.set(row.function, []);
    byName.get(row.function).push(row);
  }
  const view = $("view");
  let input = $("search");
  if (!input || !view.contains(input)) {
    input = el("input", {
      id: "search", type: "search", placeholder: "Search functions", "aria-label": "Search functions",
      oninput: (e) => { search = e.target.value; page = 0; renderRows(); },
    });
    input.value = search;
    view.replaceChildren(
      el("h1", {}, "Functions"),
      input,
      el("table", { id: "functions" },
        el("thead", {}, el("tr", {},
          el("th", { scope: "col" }, "Name"),
          el("th", { scope: "col", class: "wide" }, "Namespace"),
          el("th", { scope: "col", class: "num" }, "Versions"),
          el("th", { scope: "col", class: "num" }, "Requests (15 min)"),
          el("th", { scope: "col", class: "wide" }, "Per minute"),
          el("th", { scope: "col", class: "num" }, "Errors"),
          el("th", { scope: "col", class: "wide" }, "$LATEST updated"))),
        el("tbody", { id: "function-rows" })),
      el("div", { class: "controls" },
        el("button", { id: "page-prev", type: "button", class: "secondary", onclick: () => { page -= 1; renderRows(); } }, "Previous"),
        el("span", { id: "page-info", class: "muted" }),
        el("button", { id: "page-next", type: "button", class: "secondary", onclick: () => { page += 1; renderRows(); } }, "Next")));
  }
  function renderRows() {
    const wanted = search.trim().toLowerCase();
    const matching = list.functions.filter((f) => !wanted || f.name.toLowerCase().includes(wanted));
    const pages = Math.max(1, Math.ceil(matching.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    const rows = matching
      .slice(page * PAGE, (page + 1) * PAGE)
      .map((f) => {
        const minutes = byName.get(f.name) || [];
        const requests = perMinute(minutes, "invocations", 15);
        const errors = perMinute(minutes, "errors", 15).reduce((a, b) => a + b, 0);
        return el("tr", { "data-function": f.name },
          el("td", {}, el("a", { href: `#/functions/${encodeURIComponent(f.name)}` }, f.name)),
          el("td", { class: "wide" }, f.namespace),
          el("td", { class: "num" }, f.version_count),
          el("td", { class: "num" }, requests.reduce((a, b) => a + b, 0)),
          el("td", { class: "wide" }, sparkline(requests, `${f.name}: requests per minute, last 15 minutes`)),
          el("td", { class: errors ? "num error" : "num" }, errors),
          el("td", { class: "wide" }, when(f.latest.updated_at_ms)));
      });
    $("function-rows").replaceChildren(...rows);
    const count = matching.length === 1 ? "1 function" : `${matching.length} functions`;
    $("page-info").textContent = `${count}, page ${page + 1} of ${pages}`;
    $("page-prev").disabled = page === 0;
    $("page-next").disabled = page >= pages - 1;
  }
  renderRows();
}

/// A bar per alias showing its split, each part labelled with its version and share.
function splitBar(alias) {
  const bar = el("div", { class: "split", role: "img", "aria-label": `${alias.name} split` });
  for (const r of alias.routes.filter((r) => r.percent > 0)) {
    const span = el("span", { "data-version": String(r.version), title: `${label(r.version)} ${r.percent}%` },
      `${label(r.version)} ${r.percent}%`);
    // Set through the CSS object model, which the style-src policy allows.
    span.style.width = `${r.percent}%`;
    bar.append(span);
  }
  return bar;
}

/// The function's rollout, or null when it never had one.
async function rolloutOf(name) {
  try {
    return await api("GET", `/v1/functions/${encodeURIComponent(name)}/rollout`);
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

function percentList(text) {
  return text.split(",").map((p) => Number(p.trim())).filter((p) => !Number.isNaN(p));
}

/// The release panel: the rollout's phase, steps and every step's judgment, live, with
/// pause/resume/abort; or a form to start one.
function releasePanel(name, rollout, act) {
  const base = `/v1/functions/${encodeURIComponent(name)}/rollout`;
  const write = me.can_write;
  const panel = el("div", { id: "release", class: "card" });
  const active = rollout && (rollout.phase === "running" || rollout.phase === "paused");
  if (rollout) {
    const steps = rollout.spec.steps_bp.map((bp) => `${bp / 100}%`).join(" → ");
    panel.append(
      el("p", {}, el("strong", {}, "Rollout "), el("span", { id: "rollout-phase", "data-phase": rollout.phase }, rollout.phase.replace("_", " ")),
        ` of ${label(rollout.spec.candidate)} over ${label(rollout.spec.stable)} through ${rollout.spec.alias}: `,
        `${rollout.current_percent}% now, steps ${steps}`),
      el("p", { id: "rollout-reason", class: "muted" }, rollout.reason),
      el("table", { id: "judgments" },
        el("thead", {}, el("tr", {},
          el("th", { scope: "col" }, "Judged"), el("th", { scope: "col", class: "num" }, "Step"),
          el("th", { scope: "col", class: "num" }, "Candidate req / err / p99"),
          el("th", { scope: "col", class: "num wide" }, "Stable req / err / p99"),
          el("th", { scope: "col" }, "Verdict"))),
        el("tbody", {}, ...rollout.judgments.map((j) => el("tr", { "data-passed": String(j.passed) },
          el("td", {}, when(j.at_ms)), el("td", { class: "num" }, `${j.step_percent}%`),
          el("td", { class: "num" }, observed(j.candidate)), el("td", { class: "num wide" }, observed(j.stable)),
          el("td", {}, j.passed ? "passed" : `failed: ${j.reason}`))))));
    if (rollout.observing) {
      panel.append(el("p", { class: "muted" }, `This step so far (${Math.round(rollout.observing.elapsed_ms / 1000)} s): candidate ${observed(rollout.observing.candidate)}, stable ${observed(rollout.observing.stable)}`));
    }
    if (write && active) {
      panel.append(el("div", { class: "controls" },
        rollout.phase === "running"
          ? el("button", { id: "rollout-pause", type: "button", class: "secondary", onclick: () => act("Pause", () => api("POST", `${base}/pause`, {})) }, "Pause")
          : el("button", { id: "rollout-resume", type: "button", class: "secondary", onclick: () => act("Resume", () => api("POST", `${base}/resume`, {})) }, "Resume"),
        el("button", { id: "rollout-abort", type: "button", class: "danger", onclick: () => act("Abort", () => api("POST", `${base}/abort`, {})) }, "Abort")));
    }
  } else {
    panel.append(el("p", { class: "muted" }, "No rollout yet."));
  }
  if (write && !active) {
    const field = (id, text, value) => [el("label", { for: id }, text), el("input", { id, value, size: 14 })];
    panel.append(el("form", { id: "rollout-form", onsubmit: (event) => {
      event.preventDefault();
      const body = {
        to: "latest",
        steps: percentList($("rollout-steps").value),
        interval_ms: Math.round(Number($("rollout-interval").value) * 1000),
        max_error_rate_percent: Number($("rollout-max-errors").value),
        max_p99_ms: Number($("rollout-max-p99").value),
        min_requests: Number($("rollout-min-requests").value),
      };
      act("Rollout", () => api("POST", base, body));
    } },
      el("strong", {}, "Roll out $LATEST through $DEFAULT"),
      el("div", { class: "controls" },
        ...field("rollout-steps", "Steps (%)", "1, 5, 25, 50, 100"),
        ...field("rollout-interval", "Each step (s)", "30"),
        ...field("rollout-max-errors", "Max errors (%)", "1"),
        ...field("rollout-max-p99", "Max p99 (ms)", "1000"),
        ...field("rollout-min-requests", "Min requests", "100")),
      el("button", { id: "rollout-start", type: "submit" }, "Start rollout")));
  }
  return panel;
}

function observed(o) {
  const p99 = o.p99_ms === null || o.p99_ms === undefined ? "-" : `${o.p99_ms.toFixed(1)} ms`;
  return `${o.requests} / ${o.errors} / ${p99}`;
}

// Where a version's code came from: the registry artifact (its digest shortened; the whole
// reference on hover), or an uploaded file.
function sourceCell(source) {
  if (!source) return el("td", { class: "wide" }, "upload");
  const [name, hex] = source.split("@sha256:");
  return el("td", { class: "wide source", title: source }, hex ? `${name}@sha256:${hex.slice(0, 12)}` : source);
}

/// Dead letters of the function's triggers and asynchronous invocations, each with a retry.
function deadLetters(name, events, invocations, act) {
  const rows = [
    ...events.map((e) => ({ id: e.id, kind: e.event_type, what: e.subject || "", error: e.last_error, path: "events" })),
    ...invocations.map((i) => ({ id: i.id, kind: "invocation", what: `${i.method} ${i.path}`, error: i.last_error, path: "invocations" })),
  ];
  if (rows.length === 0) return el("p", { id: "dead-letters", class: "muted" }, "None.");
  return el("table", { id: "dead-letters" },
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, "Id"), el("th", { scope: "col", class: "wide" }, "Kind"),
      el("th", { scope: "col" }, "What"), el("th", { scope: "col" }, "Last error"), el("th", { scope: "col" }, ""))),
    el("tbody", {}, ...rows.map((r) => el("tr", { "data-dead-letter": r.id },
      el("td", {}, r.id), el("td", { class: "wide" }, r.kind), el("td", {}, r.what), el("td", {}, r.error || ""),
      el("td", {}, me.can_write
        ? el("button", { type: "button", class: "secondary retry", "aria-label": `Retry ${r.id}`,
            onclick: () => act("Retry", () => api("POST", `/v1/${r.path}/${encodeURIComponent(r.id)}/retry`, {})) }, "Retry")
        : null)))));
}

async function functionPage(name) {
  const quoted = encodeURIComponent(name);
  const [f, rollout, failedEvents, failedInvocations, usage, scaling, history, events] = await Promise.all([
    api("GET", `/v1/functions/${quoted}`),
    rolloutOf(name),
    api("GET", `/v1/functions/${quoted}/events?status=failed&limit=50`),
    api("GET", `/v1/functions/${quoted}/invocations?status=failed&limit=50`),
    api("GET", `/v1/usage?function=${quoted}&by=minute&since=3600`),
    api("GET", `/v1/functions/${quoted}/scaling`),
    api("GET", `/v1/functions/${quoted}/history?limit=20`),
    api("GET", `/v1/functions/${quoted}/events?limit=20`),
  ]);
  const lines = await tail(name);
  const view = $("view");
  const write = me.can_write;
  const defaultAlias = f.aliases.find((a) => a.name === "$DEFAULT");
  const latest = defaultAlias && defaultAlias.latest_percent !== undefined ? defaultAlias.latest_percent : 0;
  const status = el("p", { id: "action-status", role: "status", class: "muted" });
  const act = async (what, call) => {
    status.textContent = `${what}...`;
    try {
      await call();
      status.textContent = `${what}: done`;
      await route();
    } catch (e) {
      status.textContent = `${what}: ${e.message}`;
      status.className = "error";
    }
  };
  const existing = $("latest-percent");
  // Do not redraw under a user moving the slider or typing in a field.
  const focused = document.activeElement;
  const editing = focused && focused.tagName === "INPUT" && $("view").contains(focused);
  const slider = el("input", {
    id: "latest-percent", type: "range", min: 0, max: 100, step: 1,
    "aria-label": "Share of $DEFAULT traffic to $LATEST, percent",
  });
  slider.value = editing ? existing.value : String(latest);
  const shown = el("output", { id: "latest-percent-value", for: "latest-percent" }, `${slider.value}%`);
  slider.addEventListener("input", () => { shown.textContent = `${slider.value}%`; });
  const controls = write
    ? el("div", { class: "controls" },
        el("label", { for: "latest-percent" }, "$LATEST share"), slider, shown,
        el("button", { id: "apply-traffic", type: "button",
          onclick: () => act("Traffic", () => api("PUT", `/v1/functions/${encodeURIComponent(name)}/traffic`, { latest_percent: Number(slider.value) })) }, "Apply"),
        el("button", { id: "rollback", type: "button", class: "danger",
          onclick: () => act("Rollback", () => api("PUT", `/v1/functions/${encodeURIComponent(name)}/traffic`, { latest_percent: 0 })) }, "Roll back"),
        el("button", { id: "promote", type: "button", class: "secondary",
          onclick: () => act("Promote", () => api("POST", `/v1/functions/${encodeURIComponent(name)}/promote`, {})) }, "Promote $LATEST"))
    : el("p", { class: "muted", id: "read-only" }, "Read only: your key may not change this function.");
  if (editing) return;
  const config = f.latest.config;
  view.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "Functions"), " / ", name),
    el("h1", {}, name),
    el("h2", {}, "Traffic"),
    ...f.aliases.map((a) => el("div", { class: "card", "data-alias": a.name },
      el("strong", {}, a.name), a.sticky_header ? el("span", { class: "muted" }, ` sticky by ${a.sticky_header}`) : null,
      splitBar(a))),
    controls,
    status,
    el("h2", {}, "Usage, last hour"),
    usageCharts(name, usage.rows),
    el("h2", {}, "Release"),
    releasePanel(name, rollout, act),
    el("h2", {}, "Traffic history"),
    historyTable(history.changes),
    el("h2", {}, "Dead letters"),
    deadLetters(name, failedEvents.events, failedInvocations.invocations, act),
    el("h2", {}, "Recent trigger events"),
    eventsTable(events.events),
    el("h2", {}, "Warm instances"),
    poolsPanel(name, scaling, act),
    el("h2", {}, "Logs"),
    logsPanel(lines),
    el("h2", {}, "Versions"),
    el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "Version"), el("th", { scope: "col", class: "wide" }, "Digest"),
        el("th", { scope: "col", class: "wide" }, "Source"),
        el("th", { scope: "col" }, "Description"), el("th", { scope: "col", class: "wide" }, "Published"))),
      el("tbody", {},
        el("tr", {}, el("td", {}, "$LATEST"), el("td", { class: "wide" }, f.latest.digest.slice(0, 19)),
          sourceCell(f.latest.source),
          el("td", {}, ""), el("td", { class: "wide" }, when(f.latest.updated_at_ms))),
        ...f.versions.slice().reverse().map((v) => el("tr", {},
          el("td", {}, `v${v.version}`), el("td", { class: "wide" }, v.digest.slice(0, 19)),
          sourceCell(v.source),
          el("td", {}, v.description), el("td", { class: "wide" }, when(v.created_at_ms)))))),
    el("h2", {}, "$LATEST config and limits"),
    configTable(config, f.access));
}

function configTable(config, access) {
  const policy = config.async || {};
  const list = (values) => (values && values.length ? values.join(", ") : "none");
  const rows = [
    ["memory", `${config.memory_mb} MiB`],
    ["timeout", `${config.timeout_ms} ms`],
    ["CPU budget", config.cpu_budget_ms ? `${config.cpu_budget_ms} ms` : "none"],
    ["max concurrency", config.max_concurrency],
    ["request / response body", `${config.max_request_body_bytes} / ${config.max_response_body_bytes} bytes`],
    ["environment", list(Object.keys(config.env || {}))],
    ["outbound HTTP", list(config.allow_outbound)],
    ["key-value stores", list(config.kv)],
    ["wasi:config values", list(Object.keys(config.config || {}))],
    ["secrets", list([...(config.secrets || []), ...(config.secret_env || []).map((n) => `${n} (env)`)])],
    ["async", `retries ${policy.retries ?? 2}, backoff ${policy.backoff_ms ?? 1000} ms, ` +
      `${policy.concurrency ?? 4} at once; on success ${policy.on_success || "nothing"}, on failure ${policy.on_failure || "nothing"}`],
    ["access", access],
  ];
  return el("table", { id: "config" }, el("tbody", {},
    ...rows.map(([k, v]) => el("tr", {}, el("th", { scope: "row" }, k), el("td", {}, v)))));
}

function spec(alias) {
  if (!alias) return "(none)";
  return alias.routes.map((r) => `${label(r.version)} ${r.weight_bp / 100}%`).join(", ");
}

function historyTable(changes) {
  if (!changes.length) return el("p", { id: "history", class: "muted" }, "No changes yet.");
  return el("table", { id: "history" },
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, "When"), el("th", { scope: "col" }, "Alias"),
      el("th", { scope: "col" }, "Before → after"), el("th", { scope: "col", class: "wide" }, "Who"),
      el("th", { scope: "col", class: "wide" }, "Why"))),
    el("tbody", {}, ...changes.map((c) => el("tr", {},
      el("td", {}, when(c.at_ms)), el("td", {}, c.alias), el("td", {}, `${spec(c.before)} → ${spec(c.after)}`),
      el("td", { class: "wide" }, c.actor), el("td", { class: "wide" }, c.reason)))));
}

function eventsTable(events) {
  if (!events.length) return el("p", { id: "events", class: "muted" }, "None.");
  return el("table", { id: "events" },
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, "Queued"), el("th", { scope: "col" }, "Type"), el("th", { scope: "col" }, "Subject"),
      el("th", { scope: "col" }, "Status"), el("th", { scope: "col", class: "num" }, "Attempts"))),
    el("tbody", {}, ...events.map((e) => el("tr", {},
      el("td", {}, when(e.created_ms)), el("td", {}, e.event_type), el("td", {}, e.subject || ""),
      el("td", {}, e.status), el("td", { class: "num" }, e.attempts)))));
}

/// Small multiples of the function's per-minute usage.
function usageCharts(name, rows) {
  const series = [
    ["invocations", "Requests / min", "#2456d6"],
    ["errors", "Errors / min", "#b3261e"],
    ["p50_ms", "p50 (ms)", "#1d7a3a"],
    ["p99_ms", "p99 (ms)", "#d9822b"],
    ["gb_seconds", "GB-s / min", "#5c6475"],
    ["cold_starts", "Cold starts / min", "#7b3fb3"],
  ];
  return el("div", { id: "usage", class: "charts" }, ...series.map(([field, title, color]) => {
    const values = perMinute(rows, field, 60);
    const last = values[values.length - 1];
    const total = field.endsWith("_ms") ? `${(last || 0).toFixed(1)} now` : `${values.reduce((a, b) => a + b, 0).toFixed(field === "gb_seconds" ? 3 : 0)} in all`;
    return el("figure", { "data-series": field },
      sparkline(values, `${name}: ${title}, last hour`, color, 200, 40),
      el("figcaption", {}, `${title}: ${total}`));
  }));
}

let logs = { name: null, after: 0, lines: [] };

/// The function's newest log lines: fetched after the last one seen, so each refresh
/// brings only what is new (the 2 s refresh is the follow).
async function tail(name) {
  if (logs.name !== name) logs = { name, after: 0, lines: [] };
  for (;;) {
    const page = await api("GET", `/v1/functions/${encodeURIComponent(name)}/logs?after=${logs.after}&limit=200`);
    logs.lines.push(...page.entries);
    if (page.entries.length) logs.after = page.entries[page.entries.length - 1].seq;
    if (page.entries.length < 200) break;
  }
  logs.lines = logs.lines.slice(-200);
  return logs.lines;
}

function logsPanel(lines) {
  if (!lines.length) return el("p", { id: "logs", class: "muted" }, "Nothing printed yet.");
  return el("pre", { id: "logs", tabindex: "0", "aria-label": "Function logs, newest last" },
    lines.map((l) => `${new Date(l.time_ms).toLocaleTimeString()} v${l.version} ${l.request_id}  ${l.text}`).join("\n"));
}

function poolsPanel(name, scaling, act) {
  const table = el("table", { id: "pools" },
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, "Version"), el("th", { scope: "col", class: "num" }, "Warm"),
      el("th", { scope: "col", class: "num" }, "Target"), el("th", { scope: "col", class: "num" }, "Provisioned"),
      el("th", { scope: "col", class: "num" }, "In flight"), el("th", { scope: "col", class: "num wide" }, "Idle"))),
    el("tbody", {}, ...scaling.pools.map((p) => el("tr", {},
      el("td", {}, label(p.version)), el("td", { class: "num" }, p.warm), el("td", { class: "num" }, p.target),
      el("td", { class: "num" }, p.provisioned), el("td", { class: "num" }, p.in_flight),
      el("td", { class: "num wide" }, `${Math.round(p.idle_ms / 1000)} s`)))));
  const parts = [el("p", { class: "muted" }, `Provisioned for $DEFAULT: ${scaling.policy.provisioned}` + (scaling.nodes > 1 ? ` (this node holds its part, one of ${scaling.nodes})` : "")), table];
  if (me.can_write) {
    const input = el("input", { id: "provisioned", type: "number", min: 0, max: 1000, "aria-label": "Provisioned instances for $DEFAULT" });
    input.value = String(scaling.policy.provisioned);
    parts.push(el("div", { class: "controls" }, el("label", { for: "provisioned" }, "Provisioned"), input,
      el("button", { id: "set-provisioned", type: "button", class: "secondary",
        onclick: () => act("Provisioned", () => api("PUT", `/v1/functions/${encodeURIComponent(name)}/scaling`, { provisioned: Number(input.value) })) }, "Set")));
  }
  return el("div", {}, ...parts);
}

async function nodesPage() {
  const list = await api("GET", "/v1/nodes");
  $("view").replaceChildren(
    el("h1", {}, list.fleet ? "Nodes of the fleet" : "Node"),
    el("table", { id: "nodes" },
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "Id"), el("th", { scope: "col" }, "Data plane"), el("th", { scope: "col", class: "wide" }, "Version"),
        el("th", { scope: "col", class: "wide" }, "Started"), el("th", { scope: "col", class: "num" }, "In flight"),
        el("th", { scope: "col", class: "num" }, "Warm"), el("th", { scope: "col", class: "num" }, "Heartbeat"))),
      el("tbody", {}, ...list.nodes.map((n) => el("tr", { "data-node": n.id },
        el("td", {}, n.id + (list.rollout_driver === n.id ? " (rollout driver)" : "")), el("td", {}, n.data_address),
        el("td", { class: "wide" }, n.version), el("td", { class: "wide" }, when(n.started_ms)),
        el("td", { class: "num" }, n.in_flight), el("td", { class: "num" }, n.warm_instances),
        el("td", { class: "num" }, `${((list.now_ms - n.heartbeat_ms) / 1000).toFixed(1)} s ago`))))));
}

/// A secret shown once (a new key's): kept across redraws until dismissed.
let shownSecret = null;

async function namespacesPage() {
  if (document.activeElement && document.activeElement.tagName === "INPUT" && $("view").contains(document.activeElement)) {
    return; // not under a user typing in a form
  }
  const list = await api("GET", "/v1/namespaces");
  const view = [el("h1", {}, "Namespaces")];
  if (shownSecret) {
    view.push(el("div", { id: "new-secret", class: "card", role: "alert" },
      el("p", {}, `Key ${shownSecret.id} (${shownSecret.role} of ${shownSecret.namespace}). Its secret is shown once; copy it now:`),
      el("pre", { id: "new-secret-value" }, shownSecret.secret),
      el("button", { type: "button", class: "secondary", onclick: () => { shownSecret = null; route(); } }, "Done")));
  }
  if (me.role === null) {
    const name = el("input", { id: "new-namespace", "aria-label": "New namespace name", placeholder: "name" });
    view.push(el("form", { id: "namespace-form", class: "controls", onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api("POST", "/v1/namespaces", { name: name.value.trim() });
        name.blur();
        route();
      } catch (e) {
        $("namespace-error").textContent = e.message;
      }
    } }, el("label", { for: "new-namespace" }, "New namespace"), name,
      el("button", { type: "submit" }, "Create"), el("span", { id: "namespace-error", class: "error", role: "alert" })));
  }
  const manage = (ns) => me.role === null || (me.role === "admin" && me.namespace === ns);
  for (const ns of list.namespaces) {
    const quotas = Object.entries(ns.quotas).filter(([, v]) => v !== null && v !== undefined)
      .map(([k, v]) => `${k} ${v}`).join(", ") || "no quotas";
    view.push(el("div", { class: "card", "data-namespace": ns.name },
      el("strong", {}, ns.name),
      el("p", { class: "muted" }, `${ns.usage.functions} functions, ${ns.usage.versions} versions; ${quotas}`)));
    if (manage(ns.name)) {
      const keys = await api("GET", `/v1/namespaces/${encodeURIComponent(ns.name)}/keys`);
      view.push(el("table", { class: "keys" },
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Key"), el("th", { scope: "col" }, "Role"),
          el("th", { scope: "col" }, "Description"), el("th", { scope: "col" }, "State"), el("th", { scope: "col" }, ""))),
        el("tbody", {}, ...keys.keys.map((k) => el("tr", { "data-key": k.id },
          el("td", {}, k.id), el("td", {}, k.role), el("td", {}, k.description), el("td", {}, k.state),
          el("td", {}, k.state === "active" ? el("button", { type: "button", class: "danger revoke", "aria-label": `Revoke key ${k.id}`,
            onclick: async () => { await api("DELETE", `/v1/keys/${encodeURIComponent(k.id)}`); route(); } }, "Revoke") : null))))));
      const role = el("select", { "aria-label": `Role of a new key in ${ns.name}`, class: "new-key-role" },
        ...["viewer", "deployer", "admin", "invoker"].map((r) => el("option", { value: r }, r)));
      const description = el("input", { "aria-label": `Description of a new key in ${ns.name}`, placeholder: "what it is for", class: "new-key-description" });
      view.push(el("form", { class: "controls new-key", "data-namespace-form": ns.name, onsubmit: async (event) => {
        event.preventDefault();
        const created = await api("POST", `/v1/namespaces/${encodeURIComponent(ns.name)}/keys`,
          { role: role.value, description: description.value });
        shownSecret = { id: created.id, role: created.role, namespace: ns.name, secret: created.secret };
        description.blur();
        route();
      } }, el("label", {}, "New key"), role, description, el("button", { type: "submit" }, "Create key")));
    }
  }
  $("view").replaceChildren(...view);
}

// --- start -----------------------------------------------------------------------------

document.addEventListener("keydown", (event) => {
  // "/" jumps to the function search, as on many consoles.
  if (event.key === "/" && document.activeElement.tagName !== "INPUT" && $("search")) {
    event.preventDefault();
    $("search").focus();
  }
});

window.addEventListener("hashchange", route);
$("sign-out").addEventListener("click", () => signOut(""));
$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = $("token").value.trim();
  $("token").value = "";
  try {
    await signIn(token);
  } catch (e) {
    signOut(e.status === 401 ? "That key or token was not accepted." : e.message);
  }
});
if (sessionStorage.getItem(TOKEN)) {
  signIn(sessionStorage.getItem(TOKEN)).catch((e) => signOut(e.message));
} else {
  signOut("");
}
