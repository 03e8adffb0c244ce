// The model-validation page: GET /v1/models/clv/validation drawn as Fader, Hardie and Lee's
// (2005) conditional-expectation figure: per number of repeat purchases in the calibration
// period, the mean holdout purchase days per customer, actual against predicted.
"use strict";
(() => {
  const KEY_ITEM = "crm-scoring-key";
  const lang = new URLSearchParams(location.search).get("lang") === "zh" ? "zh" : "en";
  const TEXT = {
    en: {
      title: "How well the purchase model predicts this base",
      subtitle: "BG/NBD fitted on the calibration period; each customer's holdout purchases predicted from their calibration history alone (Fader, Hardie & Lee 2005).",
      keyLabel: "API key (scope customers:read)", keyUse: "Use", keyRefused: "The key was refused",
      calibration: "Calibration ends", holdout: "Holdout ends", run: "Validate",
      actual: "Actual", predicted: "Predicted (BG/NBD)",
      xAxis: "Repeat purchase days in the calibration period",
      yAxis: "Holdout purchase days per customer",
      working: "Fitting the model…", noHistory: "Not enough history yet:",
      caption: (v) =>
        `Calibration ${v.calibration.start} – ${v.calibration.end} (${v.calibration.weeks.toFixed(1)} weeks), ` +
        `holdout ${v.holdout.start} – ${v.holdout.end} (${v.holdout.weeks.toFixed(1)} weeks); ` +
        `${v.customers} customers (${v.customers_new_in_holdout} new in the holdout, not compared). ` +
        `Totals: ${v.errors.actual_total.toFixed(0)} actual, ${v.errors.predicted_total.toFixed(0)} predicted` +
        (v.errors.total_error === null ? "" : ` (${(100 * v.errors.total_error).toFixed(1)} %)`) +
        `; MAE ${v.errors.mean_absolute_error.toFixed(3)}, RMSE ${v.errors.root_mean_squared_error.toFixed(3)} purchase days per customer. ` +
        `r ${v.parameters.r.toFixed(3)}, alpha ${v.parameters.alpha.toFixed(3)} (${v.time_unit}s), a ${v.parameters.a.toFixed(3)}, b ${v.parameters.b.toFixed(3)}.`,
      columns: ["Group", "Customers", "Actual mean", "Predicted mean"],
    },
    zh: {
      title: "购买模型对本客户群的预测效果",
      subtitle: "在校准期拟合 BG/NBD；每位客户在验证期的购买仅由其校准期历史预测（Fader、Hardie 与 Lee，2005）。",
      keyLabel: "API 密钥（权限 customers:read）", keyUse: "使用", keyRefused: "密钥被拒绝",
      calibration: "校准期截止", holdout: "验证期截止", run: "验证",
      actual: "实际", predicted: "预测（BG/NBD）",
      xAxis: "校准期内的重复购买天数", yAxis: "验证期人均购买天数",
      working: "正在拟合模型…", noHistory: "历史数据不足：",
      caption: (v) =>
        `校准期 ${v.calibration.start} 至 ${v.calibration.end}（${v.calibration.weeks.toFixed(1)} 周），` +
        `验证期 ${v.holdout.start} 至 ${v.holdout.end}（${v.holdout.weeks.toFixed(1)} 周）；` +
        `${v.customers} 位客户（验证期新客户 ${v.customers_new_in_holdout} 位，不参与比较）。` +
        `合计：实际 ${v.errors.actual_total.toFixed(0)}，预测 ${v.errors.predicted_total.toFixed(0)}` +
        (v.errors.total_error === null ? "" : `（${(100 * v.errors.total_error).toFixed(1)} %）`) +
        `；平均绝对误差 ${v.errors.mean_absolute_error.toFixed(3)}，均方根误差 ${v.errors.root_mean_squared_error.toFixed(3)}（每位客户的购买天数）。`,
      columns: ["组", "客户数", "实际均值", "预测均值"],
    },
  };
  const t = TEXT[lang];
  const COLOURS = { actual: "#111827", predicted: "#2563eb" };

  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("key")) {
    sessionStorage.setItem(KEY_ITEM, fragment.get("key"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  document.documentElement.lang = lang;
  document.title = t.title;
  for (const [id, text] of Object.entries({
    title: t.title, subtitle: t.subtitle, "key-label": t.keyLabel, "key-use": t.keyUse,
    "calibration-label": t.calibration, "holdout-label": t.holdout, run: t.run,
  })) document.getElementById(id).textContent = text;

  // The split may come in the page's address (?calibration_end=&holdout_end=): a link to it.
  const given = new URLSearchParams(location.search);
  for (const name of ["calibration_end", "holdout_end"]) {
    if (given.get(name)) document.getElementById(name).value = given.get(name);
  }
  const status = document.getElementById("status");
  const keyForm = document.getElementById("key-form");
  keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY_ITEM, document.getElementById("key").value.trim());
    keyForm.hidden = true;
    load();
  });
  document.getElementById("split").addEventListener("submit", (e) => {
    e.preventDefault();
    load();
  });

  async function load() {
    const key = sessionStorage.getItem(KEY_ITEM);
    if (!key) {
      keyForm.hidden = false;
      return;
    }
    const query = new URLSearchParams();
    for (const name of ["calibration_end", "holdout_end"]) {
      const value = document.getElementById(name).value;
      if (value) query.set(name, value);
    }
    status.textContent = t.working;
    const response = await fetch(`/v1/models/clv/validation?${query}`, {
      headers: { accept: "application/json", authorization: `Bearer ${key}` },
    });
    if (response.status === 401 || response.status === 403) {
      status.textContent = `${t.keyRefused} (HTTP ${response.status})`;
      keyForm.hidden = false;
      return;
    }
    const body = await response.json();
    if (!response.ok) {
      // A problem detail: say what was wrong, with the field when there is one.
      const field = (body.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
      status.textContent = `${response.status === 409 ? t.noHistory : ""} ${body.detail}${field ? ` (${field})` : ""}`;
      return;
    }
    status.textContent = "";
    document.getElementById("caption").textContent = t.caption(body);
    draw(body.groups);
    table(body.groups);
    // What the page drew, read back from the canvas: the groups plotted and the pixels of
    // the predicted series' colour (a test reads both from the DOM).
    document.body.dataset.drawn = String(body.groups.length);
    document.getElementById("chart").dataset.ink = String(inkOf(COLOURS.predicted));
  }

  function draw(groups) {
    const canvas = document.getElementById("chart");
    const g = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, left = 64, right = 16, top = 40, bottom = 56;
    g.clearRect(0, 0, w, h);
    const top_value = Math.max(...groups.flatMap((x) => [x.actual_mean, x.predicted_mean]), 0.1);
    const yMax = niceCeiling(top_value * 1.1);
    const x = (i) => left + (groups.length === 1 ? 0.5 : i / (groups.length - 1)) * (w - left - right);
    const y = (v) => top + (1 - v / yMax) * (h - top - bottom);
    g.font = "13px system-ui, sans-serif";
    g.fillStyle = "#4b5563";
    g.strokeStyle = "#e5e7eb";
    for (let k = 0; k <= 5; k++) {
      const v = (yMax * k) / 5;
      g.beginPath();
      g.moveTo(left, y(v));
      g.lineTo(w - right, y(v));
      g.stroke();
      g.textAlign = "right";
      g.fillText(v.toFixed(yMax < 5 ? 1 : 0), left - 8, y(v) + 4);
    }
    g.textAlign = "center";
    groups.forEach((group, i) => g.fillText(group.label, x(i), h - bottom + 20));
    g.fillText(t.xAxis, (left + w - right) / 2, h - 12);
    g.save();
    g.translate(16, (top + h - bottom) / 2);
    g.rotate(-Math.PI / 2);
    g.fillText(t.yAxis, 0, 0);
    g.restore();
    for (const [series, label, dashed] of [["actual_mean", t.actual, false], ["predicted_mean", t.predicted, true]]) {
      const colour = dashed ? COLOURS.predicted : COLOURS.actual;
      g.strokeStyle = colour;
      g.fillStyle = colour;
      g.lineWidth = 2;
      g.setLineDash(dashed ? [6, 4] : []);
      g.beginPath();
      groups.forEach((group, i) => (i ? g.lineTo : g.moveTo).call(g, x(i), y(group[series])));
      g.stroke();
      g.setLineDash([]);
      groups.forEach((group, i) => {
        g.beginPath();
        g.arc(x(i), y(group[series]), 3.5, 0, 2 * Math.PI);
        g.fill();
      });
      const legendX = dashed ? w - 220 : w - 400;
      g.fillRect(legendX, 16, 18, 3);
      g.textAlign = "left";
      g.fillText(label, legendX + 24, 21);
    }
  }

  function inkOf(colour) {
    const canvas = document.getElementById("chart");
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    const [r, g, b] = [1, 3, 5].map((i) => parseInt(colour.slice(i, i + 2), 16));
    let count = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      if (Math.abs(pixels[i] - r) < 8 && Math.abs(pixels[i + 1] - g) < 8 && Math.abs(pixels[i + 2] - b) < 8) count++;
    }
    return count;
  }

  function niceCeiling(value) {
    const power = 10 ** Math.floor(Math.log10(value));
    return [1, 2, 2.5, 5, 10].map((m) => m * power).find((c) => c >= value);
  }

  function table(groups) {
    const head = document.getElementById("groups-head");
    head.replaceChildren(...t.columns.map((c) => Object.assign(document.createElement("th"), { textContent: c })));
    const body = document.querySelector("#groups tbody");
    body.replaceChildren(
      ...groups.map((group) => {
        const row = document.createElement("tr");
        for (const value of [group.label, group.customers, group.actual_mean.toFixed(3), group.predicted_mean.toFixed(3)]) {
          row.append(Object.assign(document.createElement("td"), { textContent: String(value) }));
        }
        return row;
      }),
    );
    document.getElementById("groups").hidden = false;
  }

  load();
})();
