// The eventsource dashboard: polls the snapshot and draws it. Read-only.
// Every value from the server goes into the page as text (never as HTML):
// event fields and error messages are data, not markup.
"use strict";

(function () {
  const TOKEN_KEY = "eventsource-dashboard-token";
  const opened = new Set(); // keys of <details> the reader opened, kept across redraws
  let seenEvents = null; // context:position of the events drawn last time
  let interval = 2000;
  let lastOk = 0;

  // -- the token: given once as #token=..., kept for this tab only --------
  function takeToken() {
    const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (match) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  // -- small DOM helpers -----------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function table(columns, rows, attrs) {
    const head = el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null }, c.title)));
    const body = rows.map((row) =>
      el(
        "tr",
        row.attrs || {},
        columns.map((c, i) => el("td", { class: c.num ? "num" : c.cls || null }, row.cells[i]))
      )
    );
    return el("div", { class: "table-wrap" }, el("table", attrs || {}, el("thead", {}, head), el("tbody", {}, body)));
  }

  function remembered(key, summary, ...content) {
    const node = el("details", { "data-key": key, open: opened.has(key) }, el("summary", {}, summary), ...content);
    node.addEventListener("toggle", () => (node.open ? opened.add(key) : opened.delete(key)));
    return node;
  }

  function number(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en");
  }

  function ago(iso, now) {
    if (!iso) return "–";
    const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
    if (seconds < 90) return `${seconds} s ago`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
    return `${Math.round(seconds / 3600)} h ago`;
  }

  function time(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  // Ids are time-ordered (UUIDv7): their first digits are a timestamp that
  // neighbours share, their last ones tell them apart.
  function short(id) {
    return id ? el("span", { class: "mono", title: id }, `…${String(id).slice(-12)}`) : "–";
  }

  const STATE_COLOURS = {
    running: "green",
    unresponsive: "red",
    failed: "red",
    stopped: "amber",
    rebuilt: "blue",
    rebalancing: "amber",
    "never run": "grey",
  };

  function statePill(state) {
    const colour = STATE_COLOURS[state] || "grey";
    return el("span", { class: `pill pill-${colour}`, "data-testid": "state" }, state || "unknown");
  }

  // -- the lag sparkline -------------------------------------------------------
  function sparkline(points) {
    const width = 180;
    const height = 36;
    const svgNs = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNs, "svg");
    svg.setAttribute("class", "sparkline");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const known = points.filter((p) => p[1] !== null);
    if (known.length < 2) return svg;
    const t0 = known[0][0];
    const span = Math.max(1e-9, known[known.length - 1][0] - t0);
    const top = Math.max(1, ...known.map((p) => p[1]));
    const xy = known.map((p) => [
      ((p[0] - t0) / span) * (width - 2) + 1,
      height - 2 - (p[1] / top) * (height - 4),
    ]);
    const line = xy.map((p) => `${p[0].toFixed(1)},${p[1].toFixed(1)}`).join(" ");
    const area = document.createElementNS(svgNs, "polygon");
    area.setAttribute("class", "area");
    area.setAttribute("points", `1,${height - 2} ${line} ${xy[xy.length - 1][0].toFixed(1)},${height - 2}`);
    const poly = document.createElementNS(svgNs, "polyline");
    poly.setAttribute("points", line);
    const title = document.createElementNS(svgNs, "title");
    title.textContent = `lag over the last ${Math.round(span / 60)} min: max ${top.toLocaleString("en")}`;
    svg.append(title, area, poly);
    return svg;
  }

  // -- sections ------------------------------------------------------------------
  function drawContexts(contexts) {
    const rows = contexts.map((c) => ({
      attrs: { "data-context": c.name },
      cells: [
        el("strong", {}, c.name),
        el("span", { class: "mono" }, c.database),
        number(c.head),
        relayCell(c.relay),
        c.error ? el("span", { class: "error" }, c.error) : "",
      ],
    }));
    return table(
      [
        { title: "context" },
        { title: "database" },
        { title: "head position", num: true },
        { title: "relay" },
        { title: "" },
      ],
      rows
    );
  }

  function relayCell(relay) {
    if (!relay) return el("span", { class: "muted" }, "embedded log");
    const colour = relay.status === "running" ? "green" : relay.status === "unresponsive" ? "red" : "grey";
    return el(
      "span",
      {},
      el("span", { class: `pill pill-${colour}` }, relay.status),
      ` on Kafka up to ${number(relay.on_kafka)}, backlog ${number(relay.backlog)}`,
      relay.retrying ? el("div", { class: "warn" }, relay.retrying) : null
    );
  }

  function drawConsumer(c, now) {
    const lagValue = c.lag_events !== null && c.lag_events !== undefined ? c.lag_events : c.lag;
    const lagUnit = c.lag_events !== null && c.lag_events !== undefined ? "events behind" : "offsets behind";
    const stale = c.version !== null && c.version !== undefined && c.version !== c.code_version;
    const head = el(
      "div",
      { class: "card-head" },
      el("h3", { "data-testid": "consumer-name" }, c.name),
      el("span", { class: "pill pill-outline" }, c.kind),
      el("span", { class: "pill pill-outline" }, c.context),
      c.output ? el("span", { class: "pill pill-outline mono", "data-testid": "output" }, `→ ${c.output}`) : null,
      c.version ? el("span", { class: "pill pill-outline" }, `v${c.version}`) : null,
      stale ? el("span", { class: "pill pill-amber" }, `code v${c.code_version}: rebuild`) : null,
      statePill(c.status)
    );
    const since =
      c.status === "running"
        ? `${(c.live_members || []).length} live worker(s)`
        : c.unresponsive_since
          ? `last heartbeat ${ago(c.unresponsive_since, now)}`
          : "";
    const figures = el(
      "div",
      { class: "figures" },
      el(
        "div",
        { class: "figure" },
        el("div", { class: `value${lagValue > 0 ? " bad" : ""}`, "data-testid": "lag" }, number(lagValue)),
        el("div", { class: "label" }, lagUnit)
      ),
      el("div", { class: "figure" }, sparkline(c.lag_history || []), el("div", { class: "label" }, "lag over time")),
      el(
        "div",
        { class: "figure" },
        el("div", { class: "value", "data-testid": "throughput" }, c.throughput === null || c.throughput === undefined ? "–" : c.throughput.toFixed(1)),
        el("div", { class: "label" }, c.throughput_unit || "events / s")
      ),
      el(
        "div",
        { class: "figure" },
        el("div", { class: `value${c.parked ? " bad" : ""}`, "data-testid": "parked" }, number(c.parked || 0)),
        el("div", { class: "label" }, "parked")
      ),
      c.deadlines
        ? el(
            "div",
            { class: "figure" },
            el("div", { class: "value", "data-testid": "deadlines-count" }, number(c.deadlines.count)),
            el("div", { class: "label" }, "deadlines pending")
          )
        : null
    );
    const notes = [];
    if (since) notes.push(el("div", { class: "muted" }, since));
    if (c.group) {
      const ids = c.group_members || [];
      const members = ids.length ? `${ids.length} member(s): ${ids.join(", ")}` : "no members";
      notes.push(el("div", { class: "muted", "data-testid": "group" }, `group ${c.group} ${c.group_state}, ${members}`));
    }
    if (c.dead_letter_topic) {
      notes.push(el("div", { class: "muted" }, `parks what it cannot transform in topic ${c.dead_letter_topic}`));
    }
    if (c.error) notes.push(el("div", { class: "error" }, c.error));
    if (c.retrying) notes.push(el("div", { class: "warn" }, c.retrying));
    for (const topic of c.missing_topics || []) {
      notes.push(el("div", { class: "warn" }, `topic ${topic} is missing: nothing relayed to it yet, or a misspelled name`));
    }
    if (c.last_error) {
      notes.push(
        remembered(
          `${c.name}:last-error`,
          el("span", { class: "error" }, `last error ${c.last_error_at ? time(c.last_error_at) : ""}`),
          el("pre", { class: "error" }, c.last_error)
        )
      );
    }
    return el(
      "article",
      { class: "card", "data-consumer": c.name },
      head,
      figures,
      notes,
      drawWorkers(c, now),
      drawPartitions(c),
      drawDeadLetters(c),
      c.deadlines ? drawDeadlines(c) : null
    );
  }

  function drawWorkers(c, now) {
    const members = c.members || [];
    if (!members.length) return null;
    const live = new Set(c.live_members || []);
    return [
      el("h4", {}, "workers"),
      table(
        [{ title: "worker" }, { title: "host" }, { title: "pid", num: true }, { title: "partitions" }, { title: "applied", num: true }, { title: "heartbeat" }],
        members.map((m) => ({
          cells: [
            m.name,
            m.host,
            m.pid,
            el("span", { class: "mono" }, (m.partitions || []).join(" ")),
            number(m.applied),
            live.has(m.name) ? ago(m.heartbeat_at, now) : el("span", { class: "error" }, `${ago(m.heartbeat_at, now)} (stale)`),
          ],
        }))
      ),
    ];
  }

  function drawPartitions(c) {
    const parts = c.partitions || [];
    if (!parts.length) return null;
    return [
      el("h4", {}, "positions"),
      table(
        [
          { title: "topic" },
          { title: "partition", num: true },
          { title: "offset", num: true },
          { title: "end", num: true },
          { title: "lag", num: true },
          { title: "events behind", num: true },
          { title: "last position", num: true },
        ],
        parts.map((p) => ({
          cells: [el("span", { class: "mono" }, p.topic), p.partition, number(p.offset), number(p.end), number(p.lag), number(p.lag_events), number(p.last_position)],
        }))
      ),
    ];
  }

  function drawDeadLetters(c) {
    const letters = c.dead_letters || [];
    const counts = Object.entries(c.dead_letter_counts || {}).map(([k, v]) => `${v} ${k}`).join(", ");
    if (!letters.length) return null;
    return [
      el("h4", {}, `dead letters (${counts})`),
      table(
        [{ title: "id", num: true }, { title: "status" }, { title: "event" }, { title: "where" }, { title: "error" }, { title: "resolution" }],
        letters.map((d) => ({
          attrs: { "data-testid": "dead-letter", "data-status": d.status },
          cells: [
            d.id,
            el("span", { class: `pill pill-${d.status === "parked" || d.status === "stopped" ? "red" : d.status === "blocked" ? "amber" : "grey"}` }, d.status),
            deadLetterEvent(d),
            el("span", { class: "mono" }, `${d.topic}[${d.partition}]@${d.offset}`),
            remembered(
              `${c.name}:letter:${d.id}`,
              el("span", { class: "error" }, firstLine(d.error)),
              el("pre", { class: "error" }, d.error),
              d.event && d.event.payload ? el("pre", { class: "mono" }, d.event.payload) : null
            ),
            d.resolution ? `${d.resolution} (${d.resolved_by || "?"}, ${time(d.resolved_at)})` : d.resolved_at ? time(d.resolved_at) : "",
          ],
        }))
      ),
    ];
  }

  function deadLetterEvent(d) {
    const e = d.event;
    return el(
      "div",
      {},
      el("div", {}, d.event_type || "?", " ", el("span", { class: "mono muted" }, d.stream_id || "")),
      e ? el("div", { class: "muted" }, `v${e.version} @ ${e.position}, correlation `, short(e.correlation_id)) : null,
      el("div", { class: "muted" }, `parked ${time(d.parked_at)}`)
    );
  }

  function firstLine(text) {
    const line = String(text || "").split("\n")[0];
    return line.length > 120 ? `${line.slice(0, 117)}…` : line;
  }

  function drawDeadlines(c) {
    const items = c.deadlines.items || [];
    if (!items.length) return null;
    const more = c.deadlines.count > items.length ? ` (first ${items.length} of ${c.deadlines.count})` : "";
    return [
      el("h4", {}, `deadlines pending${more}`),
      table(
        [{ title: "deadline" }, { title: "key" }, { title: "due" }, { title: "attempts", num: true }, { title: "correlation" }],
        items.map((d) => ({ attrs: { "data-testid": "deadline" }, cells: [d.name, d.key, time(d.due_at), d.attempts, short(d.correlation_id)] }))
      ),
    ];
  }

  function drawEvents(events) {
    if (!events.length) return el("div", { class: "empty" }, "no events yet");
    const now = new Set(events.map((e) => `${e.context}:${e.position}`));
    const rows = events.map((e) => {
      const key = `${e.context}:${e.position}`;
      const fresh = seenEvents !== null && !seenEvents.has(key);
      return {
        attrs: { class: fresh ? "fresh" : null, "data-testid": "event" },
        cells: [
          time(e.occurred_at),
          e.context,
          number(e.position),
          el("span", { class: "mono" }, e.topic),
          e.event_type,
          el("span", { class: "mono" }, `${e.aggregate_id} v${e.version}`),
          el("span", { class: "mono", "data-testid": "correlation", title: e.correlation_id || "" }, e.correlation_id || "–"),
          e.payload ? remembered(`event:${key}`, "payload", el("pre", { class: "mono" }, e.payload)) : null,
        ],
      };
    });
    seenEvents = now;
    const columns = [
      { title: "occurred at" },
      { title: "context" },
      { title: "position", num: true },
      { title: "topic" },
      { title: "type" },
      { title: "aggregate" },
      { title: "correlation id" },
    ];
    if (events.some((e) => e.payload)) columns.push({ title: "payload" });
    else rows.forEach((r) => r.cells.pop());
    return table(columns, rows);
  }

  function replace(id, content) {
    const node = document.getElementById(id);
    node.replaceChildren(...[content].flat().filter((c) => c));
  }

  function draw(snapshot) {
    const now = Date.now();
    if (!snapshot.sampled_at) {
      document.getElementById("meta").textContent = "waiting for the first sample…";
      return;
    }
    interval = Math.max(500, (snapshot.interval || 2) * 1000);
    document.getElementById("meta").textContent = `${snapshot.mode} · sampled ${time(snapshot.sampled_at)} · every ${snapshot.interval} s`;
    replace("contexts", drawContexts(snapshot.contexts || []));
    const consumers = snapshot.consumers || [];
    replace("consumers", consumers.length ? consumers.map((c) => drawConsumer(c, now)) : el("div", { class: "empty" }, "no projections, reactors or transforms named"));
    replace("events", [snapshot.error ? el("div", { class: "error" }, snapshot.error) : null, drawEvents(snapshot.events || [])]);
  }

  function health(text, colour) {
    const node = document.getElementById("health");
    node.textContent = text;
    node.className = `pill pill-${colour}`;
  }

  function notice(text) {
    const node = document.getElementById("notice");
    node.hidden = !text;
    node.textContent = text || "";
  }

  async function poll() {
    const token = takeToken();
    try {
      const response = await fetch("api/snapshot", {
        headers: token ? { Authorization: `Bearer ${token}` } : {},
        cache: "no-store",
      });
      if (response.status === 401) {
        notice("This dashboard needs its token: open it as …/#token=<token> (the token never leaves this tab).");
        health("locked", "red");
      } else if (!response.ok) {
        throw new Error(`HTTP ${response.status}`);
      } else {
        draw(await response.json());
        notice(null);
        lastOk = Date.now();
        const age = Number(response.headers.get("x-snapshot-age"));
        if (age > Math.max(15, (5 * interval) / 1000)) health(`stale: sampled ${Math.round(age)} s ago`, "amber");
        else health("live", "green");
      }
    } catch (error) {
      if (Date.now() - lastOk > 3 * interval) {
        health("disconnected", "red");
        notice(`Cannot reach the dashboard's server (${error.message}); retrying.`);
      }
    }
    setTimeout(poll, interval);
  }

  poll();
})();
