// The reporting dashboard: headline cards, four time series (uPlot, served from the package),
// the cohort retention matrix, the tier breakdown and the open crisis alerts, in English or
// Chinese, refreshing itself. Plain browser JavaScript, no build step. Every number comes
// from the service's own API, and every date from the service's calendar (its TIMEZONE):
// the browser's own clock and zone are never asked what day it is.
(function () {
  "use strict";

  const CONFIG = JSON.parse(document.getElementById("config").textContent);
  const params = new URLSearchParams(location.search);
  const TEXT = {
    en: {
      title: "Customer relationship KPIs", period: "Period", day: "Day", week: "Week",
      month: "Month", updated: "Updated", tiers: "By tier, this period",
      alerts: "Open crisis alerts", footer: "Definitions and sources of every KPI:",
      none: "No open alert", vsPrevious: "vs previous", noData: "no data", tier: "Tier",
      notEnoughData: "not enough data", noDataYet: "no data yet",
      dataThrough: "Data through", cohorts: "Cohort retention: first-purchase month × months since",
      cohortMonth: "First purchase", cohortCustomers: "Customers", monthsSince: (k) => `+${k}`,
      error: "Cannot load the data", keyPrompt: "API key (scope reports:read)", keyUse: "Use",
      keyRefused: "The key was refused", alertText: (a) =>
        // Negative signals are not complaints: say what was counted.
        a.dimension === "signal"
          ? `${a.count} ${{ nps_detractor: "negative NPS answers (detractors)", csat_negative: "negative CSAT answers", interaction_negative: "interactions with negative sentiment" }[a.value] || `negative signals “${a.value}”`} (expected ${a.baseline.toFixed(1)})`
          : `${a.count} complaints in ${a.dimension} “${a.value}” (expected ${a.baseline.toFixed(1)})`,
      tierNames: { gold: "Gold", developing: "Developing", potential: "Potential", forgotten: "Forgotten", unscored: "Unscored" },
    },
    zh: {
      title: "客户关系绩效指标", period: "周期", day: "日", week: "周", month: "月",
      updated: "更新于", tiers: "按客户层级（本期）", alerts: "未解除的危机预警",
      footer: "各指标的定义与来源：", none: "暂无预警", vsPrevious: "较上期", noData: "无数据",
      notEnoughData: "数据不足", noDataYet: "暂无数据", dataThrough: "数据截至",
      cohorts: "同期群留存：首购月份 × 之后月数", cohortMonth: "首购月份", cohortCustomers: "客户数",
      monthsSince: (k) => `+${k}月`, tier: "层级", error: "数据加载失败", keyPrompt: "API 密钥（权限 reports:read）", keyUse: "使用",
      keyRefused: "密钥被拒绝", alertText: (a) =>
        a.dimension === "signal"
          ? `${a.count} ${{ nps_detractor: "条 NPS 贬损评分", csat_negative: "条 CSAT 差评", interaction_negative: "次负面情绪互动" }[a.value] || `条负面信号“${a.value}”`}（预期 ${a.baseline.toFixed(1)}）`
          : `${{ category: "类别", channel: "渠道", product: "产品" }[a.dimension] || a.dimension}` +
            `“${a.value}”出现 ${a.count} 起投诉（预期 ${a.baseline.toFixed(1)}）`,
      tierNames: { gold: "黄金客户", developing: "发展客户", potential: "潜力客户", forgotten: "被遗忘客户", unscored: "未评分" },
    },
  };
  const CHART_SCALE = { month: ["week", 26], week: ["day", 42], day: ["day", 30] };
  const DAY_SECONDS = 86400;
  // Units whose zero is "nothing happened": a series of only zeros has no data yet.
  const FLOWS = ["money", "count"];
  // The least span of a flat series' axis, per unit: a line of zeros sits at the bottom of
  // a small axis (0-5 %), not of a default 0-100 that a ratio would read as 0-10,000 %.
  const FLAT_SPAN = { ratio: 0.05, percent: 5, nps_points: 10, money: 1, count: 1 };
  const TIER_METRICS = ["revenue", "buyers", "repeat_purchase_rate", "churn_rate", "customer_equity", "average_clv"];
  const STROKE = "#2563eb"; // the series colour; the self-check counts its pixels

  let lang = params.get("lang") || localStorage.getItem("crm-lang") || "en";
  if (!TEXT[lang]) lang = "en";
  const periodSelect = document.getElementById("period");
  if (["day", "week", "month"].includes(params.get("period"))) periodSelect.value = params.get("period");
  const refreshSeconds = Number(params.get("refresh")) || CONFIG.refresh_seconds || 30;
  const charts = {};
  let last = null; // the last data loaded, re-rendered on a language switch
  let timer = null;

  const t = (key) => TEXT[lang][key];
  const label = (m) => (m ? (lang === "zh" ? m.label_zh : m.label_en) : "");
  const locale = () => (lang === "zh" ? "zh-CN" : "en-US");

  // Period dates (YYYY-MM-DD, the service's calendar days) as labels in the page's language.
  // They are handled as UTC midnights and formatted in UTC, so no browser zone moves them.
  function dateLabel(seconds, withDay, withYear) {
    const options = { timeZone: "UTC", month: "short" };
    if (withDay) options.day = "numeric";
    if (withYear) options.year = "numeric";
    return new Intl.DateTimeFormat(locale(), options).format(new Date(seconds * 1000));
  }
  const daySeconds = (iso) => Date.parse(`${iso}T00:00:00Z`) / 1000;

  function format(value, unit, compact) {
    if (value === null || value === undefined) return "–";
    const locale = lang === "zh" ? "zh-CN" : "en-US";
    const n = Number(value);
    switch (unit) {
      case "money":
        return new Intl.NumberFormat(locale, {
          style: "currency", currency: CONFIG.currency || "USD",
          notation: compact ? "compact" : "standard", maximumFractionDigits: compact ? 1 : 2,
        }).format(n);
      case "ratio":
        return new Intl.NumberFormat(locale, { style: "percent", maximumFractionDigits: 1 }).format(n);
      case "percent":
        return `${n.toFixed(1)}%`;
      case "nps_points":
        return n.toFixed(1);
      case "duration":
        return `${(n / 3600).toFixed(1)} h`;
      case "count":
        return new Intl.NumberFormat(locale).format(n);
      default:
        return n.toFixed(2);
    }
  }

  // The API key: from the address's fragment (#key=..., never sent to a server, then removed
  // from the address bar) or typed into the form; kept for this tab only (sessionStorage).
  const KEY_ITEM = "crm-api-key";
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("key")) {
    sessionStorage.setItem(KEY_ITEM, fragment.get("key"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const keyForm = document.getElementById("key-form");

  class KeyRefused extends Error {}

  async function getJSON(url) {
    const key = sessionStorage.getItem(KEY_ITEM);
    if (!key) throw new KeyRefused(t("keyPrompt"));
    const response = await fetch(url, {
      headers: { accept: "application/json", authorization: `Bearer ${key}` },
    });
    if (response.status === 401 || response.status === 403) {
      throw new KeyRefused(`${t("keyRefused")} (HTTP ${response.status})`);
    }
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  function isoDay(d) {
    return d.toISOString().slice(0, 10);
  }

  async function load() {
    const period = periodSelect.value;
    // The summary's end is today in the service's zone (its current period so far): the
    // charts end there, whatever day the browser's clock or zone says it is.
    const summary = await getJSON(`/v1/kpis/summary?period=${period}`);
    const [granularity, span] = CHART_SCALE[period];
    const to = new Date(`${summary.end}T00:00:00Z`);
    const from = new Date(to);
    if (granularity === "week") from.setUTCDate(from.getUTCDate() - 7 * (span - 1));
    else from.setUTCDate(from.getUTCDate() - (span - 1));
    const series = await getJSON(
      `/v1/kpis?metrics=revenue,nps,sla_compliance,churn_rate&granularity=${granularity}` +
      `&from=${isoDay(from)}&to=${isoDay(to)}`);
    const cohorts = await getJSON(`/v1/kpis/cohorts?to=${summary.end}`);
    const tiers = await getJSON(
      `/v1/kpis?metrics=${TIER_METRICS.join(",")}&granularity=${period}&by=tier` +
      `&from=${summary.start}&to=${summary.start}`);
    // The newest 20 open alerts (the first page; the card counts them all).
    const alerts = (await getJSON("/v1/alerts?status=open&limit=20")).items;
    return { summary, series, cohorts, tiers, alerts };
  }

  function renderCards(summary) {
    const box = document.getElementById("cards");
    box.replaceChildren();
    const cards = [...summary.cards, {
      name: "open_crisis_alerts", label_en: "Open crisis alerts", label_zh: "未解除危机预警",
      unit: "count", value: summary.open_crisis_alerts, growth: null, delta: null,
    }];
    for (const card of cards) {
      const el = document.createElement("div");
      el.className = "card";
      el.dataset.metric = card.name;
      let change = "";
      let direction = "";
      if (card.growth !== null && card.growth !== undefined) {
        change = `${card.growth >= 0 ? "+" : ""}${(card.growth * 100).toFixed(1)}% ${t("vsPrevious")}`;
        direction = card.growth >= 0 ? "up" : "down";
      } else if (card.delta !== null && card.delta !== undefined) {
        const unit = card.unit === "ratio" ? "ratio" : card.unit;
        change = `${card.delta >= 0 ? "+" : "−"}${format(Math.abs(card.delta), unit)} ${t("vsPrevious")}`;
        direction = card.delta >= 0 ? "up" : "down";
        if (card.name === "churn_rate") direction = card.delta > 0 ? "down" : "up";
      }
      el.innerHTML = '<div class="label"></div><div class="value"></div><div class="change"></div>';
      el.querySelector(".label").textContent = label(card);
      // A value the data cannot give yet (customer equity before any lifetime-value model)
      // says so rather than showing 0 or a dash.
      el.querySelector(".value").textContent =
        card.value === null ? t("notEnoughData") : format(card.value, card.unit);
      const changeEl = el.querySelector(".change");
      changeEl.textContent = change;
      if (direction) changeEl.classList.add(direction);
      box.appendChild(el);
    }
  }

  // Counts the pixels of the series colour on a chart's canvas: the proof, for people and for
  // the browser test, that a line was drawn from data (not just axes).
  function ink(u) {
    const canvas = u.ctx.canvas;
    const pixels = u.ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const [r, g, b] = [0x25, 0x63, 0xeb];
    let count = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      if (pixels[i + 3] > 200 && Math.abs(pixels[i] - r) < 40 && Math.abs(pixels[i + 1] - g) < 40 &&
          Math.abs(pixels[i + 2] - b) < 40) count++;
    }
    return count;
  }

  // The y axis from the data: from 0 (or the lowest value, when negative) to a little above
  // the highest, a ratio capped at 100 % when no value exceeds it; a flat series gets the
  // unit's least span (FLAT_SPAN) instead of uPlot's default, which is 0-100 whatever the unit.
  function yRange(unit, values) {
    const low = Math.min(0, ...values);
    const high = Math.max(0, ...values);
    let top = high > low ? high + (high - low) * 0.1 : low + (FLAT_SPAN[unit] || 1);
    if (unit === "ratio" && high <= 1) top = Math.min(top, 1);
    if (unit === "percent" && high <= 100) top = Math.min(top, 100);
    if (unit === "nps_points" && high <= 100) top = Math.min(top, 100);
    return [low, top];
  }

  // A chart without data says so instead of drawing empty axes: no value at all, or, for a
  // flow (revenue, counts), only zeros.
  function hasData(unit, values) {
    return values.length > 0 && !(FLOWS.includes(unit) && values.every((v) => v === 0));
  }

  function showEmpty(figure, plot) {
    figure.dataset.empty = "true";
    figure.dataset.ink = "0";
    const note = document.createElement("p");
    note.className = "empty";
    note.textContent = t("noDataYet");
    plot.appendChild(note);
  }

  function renderChart(figure, table) {
    const name = figure.dataset.metric;
    const info = table.metrics.find((m) => m.name === name);
    figure.querySelector("figcaption").textContent = label(info);
    const xs = table.rows.map((row) => daySeconds(row.period));
    const ys = table.rows.map((row) => (row[name] === null ? null : Number(row[name])));
    const values = ys.filter((y) => y !== null);
    figure.dataset.points = String(values.length);
    figure.dataset.lastPeriod = table.rows.length ? table.rows[table.rows.length - 1].period : "";
    const plot = figure.querySelector(".plot");
    if (charts[name]) charts[name].destroy();
    delete charts[name];
    plot.replaceChildren();
    if (!hasData(info.unit, values)) {
      showEmpty(figure, plot);
      return;
    }
    figure.dataset.empty = "false";
    const [low, high] = yRange(info.unit, values);
    const width = Math.max(plot.clientWidth, 300);
    const opts = {
      width, height: 220,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      // Ticks fall on UTC midnights and month starts: the x values are calendar days.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      scales: { x: { time: true }, y: { range: () => [low, high] } },
      series: [{}, {
        label: label(info), stroke: STROKE, width: 2, spanGaps: true,
        fill: "rgba(37, 99, 235, 0.08)", points: { show: true, size: 5, fill: STROKE },
        value: (u, v) => format(v, info.unit),
      }],
      axes: [
        { stroke: "#6b7280", grid: { stroke: "#f1f5f9" },
          values: (u, ticks, axis, space, increment) => {
            // Month ticks name the month (the year on January and on the first tick), day
            // ticks the day; in the page's language, so 6月 on the Chinese page.
            const monthly = increment >= 28 * DAY_SECONDS;
            const labels = ticks.map((v, i) => {
              const january = new Date(v * 1000).getUTCMonth() === 0;
              return dateLabel(v, !monthly, monthly && (i === 0 || january));
            });
            figure.dataset.xLabels = labels.join("|");
            return labels;
          } },
        { stroke: "#6b7280", grid: { stroke: "#f1f5f9" }, size: 70,
          values: (u, ticks) => ticks.map((v) => format(v, info.unit, true)) },
      ],
      // What was drawn, read back from the chart: the series' pixels and the y axis's ends.
      hooks: { draw: [(u) => {
        figure.dataset.ink = String(ink(u));
        figure.dataset.yMin = String(u.scales.y.min);
        figure.dataset.yMax = String(u.scales.y.max);
      }] },
    };
    charts[name] = new uPlot(opts, [xs, ys], plot);
  }

  // The cohort retention matrix as a heat map: one row per first-purchase month, one column
  // per month since, each cell the share of the cohort that bought in that month.
  function renderCohorts(matrix) {
    const figure = document.getElementById("chart-cohorts");
    figure.querySelector("figcaption").textContent = t("cohorts");
    figure.title = `${matrix.definition.formula} (${matrix.definition.source})`;
    const plot = figure.querySelector(".plot");
    plot.replaceChildren();
    const cohorts = matrix.cohorts.filter((c) => c.customers > 0);
    figure.dataset.points = String(cohorts.length);
    if (!cohorts.length) {
      showEmpty(figure, plot);
      return;
    }
    figure.dataset.empty = "false";
    const columns = Math.max(...cohorts.map((c) => c.retention.length));
    const tableEl = document.createElement("table");
    tableEl.className = "cohorts";
    const head = tableEl.createTHead().insertRow();
    for (const text of [t("cohortMonth"), t("cohortCustomers")]) {
      head.appendChild(document.createElement("th")).textContent = text;
    }
    for (let k = 0; k < columns; k++) {
      head.appendChild(document.createElement("th")).textContent = TEXT[lang].monthsSince(k);
    }
    const body = tableEl.createTBody();
    for (const cohort of cohorts) {
      const row = body.insertRow();
      row.dataset.cohort = cohort.cohort;
      row.insertCell().textContent = dateLabel(daySeconds(cohort.cohort), false, true);
      row.insertCell().textContent = format(cohort.customers, "count");
      for (let k = 0; k < columns; k++) {
        const cell = row.insertCell();
        const share = cohort.retention[k];
        if (share === undefined || share === null) continue;
        cell.textContent = format(share, "ratio");
        cell.dataset.share = String(share);
        cell.style.backgroundColor = `rgba(37, 99, 235, ${(0.08 + 0.8 * share).toFixed(3)})`;
        if (share > 0.5) cell.style.color = "#ffffff";
      }
    }
    plot.appendChild(tableEl);
  }

  function renderTiers(table) {
    const head = document.querySelector("#tiers thead");
    const body = document.querySelector("#tiers tbody");
    const infos = table.metrics;
    head.innerHTML = "<tr><th></th></tr>";
    head.querySelector("th").textContent = t("tier");
    for (const m of infos) {
      const th = document.createElement("th");
      th.textContent = label(m);
      head.firstChild.appendChild(th);
    }
    body.replaceChildren();
    const order = ["gold", "developing", "potential", "forgotten", "unscored"];
    const rows = [...table.rows].sort((a, b) => order.indexOf(a.tier) - order.indexOf(b.tier));
    if (!rows.length) {
      const empty = body.insertRow().insertCell();
      empty.colSpan = infos.length + 1;
      empty.className = "empty";
      empty.textContent = t("noDataYet");
    }
    const maxRevenue = Math.max(1, ...rows.map((r) => Number(r.revenue) || 0));
    for (const row of rows) {
      const tr = document.createElement("tr");
      tr.dataset.tier = row.tier;
      const name = document.createElement("td");
      name.textContent = TEXT[lang].tierNames[row.tier] || row.tier;
      tr.appendChild(name);
      for (const m of infos) {
        const td = document.createElement("td");
        if (m.name === "revenue") {
          const bar = document.createElement("span");
          bar.className = "bar";
          bar.style.width = `${Math.round((60 * (Number(row.revenue) || 0)) / maxRevenue)}px`;
          td.appendChild(bar);
        }
        const cell = row[m.name];
        td.appendChild(document.createTextNode(
          cell === null ? t("notEnoughData") : format(cell, m.unit)));
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  function renderAlerts(alerts) {
    const list = document.getElementById("alerts");
    list.replaceChildren();
    if (!alerts.length) {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = t("none");
      list.appendChild(li);
    }
    for (const alert of alerts) {
      const li = document.createElement("li");
      li.dataset.alert = alert.id;
      const what = document.createElement("span");
      what.className = "what";
      what.textContent = TEXT[lang].alertText(alert);
      const when = document.createElement("div");
      // In the service's zone, like every date on the page.
      const shown = { timeZone: CONFIG.timezone || "UTC", dateStyle: "medium", timeStyle: "short" };
      const at = (iso) => new Date(iso).toLocaleString(locale(), shown);
      when.textContent = `${at(alert.window_start)} – ${at(alert.window_end)}`;
      li.append(what, when);
      list.appendChild(li);
    }
  }

  function render() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    document.getElementById("lang").textContent = lang === "zh" ? "English" : "中文";
    if (!last) return;
    renderCards(last.summary);
    for (const figure of document.querySelectorAll(".chart[data-metric]")) {
      renderChart(figure, last.series);
    }
    renderCohorts(last.cohorts);
    const through = document.getElementById("through");
    through.dataset.to = last.summary.end;
    through.textContent = `${t("dataThrough")} ${new Intl.DateTimeFormat(locale(), {
      timeZone: "UTC", year: "numeric", month: "long", day: "numeric",
    }).format(new Date(`${last.summary.end}T00:00:00Z`))}`;
    renderTiers(last.tiers);
    renderAlerts(last.alerts);
    document.getElementById("updated").textContent = last.at.toLocaleTimeString(locale(), {
      timeZone: CONFIG.timezone || "UTC",
    });
  }

  async function refresh() {
    clearTimeout(timer);
    const error = document.getElementById("error");
    try {
      last = { ...(await load()), at: new Date() };
      error.hidden = true;
      keyForm.hidden = true;
      render();
      document.body.dataset.state = "ready";
      document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    } catch (e) {
      error.textContent = e instanceof KeyRefused ? e.message : `${t("error")}: ${e.message}`;
      error.hidden = false;
      keyForm.hidden = !(e instanceof KeyRefused);
      document.body.dataset.state = e instanceof KeyRefused ? "needs-key" : "error";
    }
    timer = setTimeout(refresh, refreshSeconds * 1000);
  }

  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("crm-lang", lang);
    render();
  });
  periodSelect.addEventListener("change", refresh);
  keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("key");
    sessionStorage.setItem(KEY_ITEM, input.value.trim());
    input.value = "";
    refresh();
  });
  window.addEventListener("resize", () => render());
  render();
  refresh();
})();
