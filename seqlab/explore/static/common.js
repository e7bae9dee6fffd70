// What every widget's module shares: calling the server, showing its one-line errors,
// controls (slider, toggle, choice), typeset equations and small SVG plots.

const SVG = "http://www.w3.org/2000/svg";

// GET (or POST with a JSON body) an endpoint of the explorer; the answer's JSON, or an
// Error whose message is the server's one line.
export async function api(path, params = {}, { method = "GET", body = null, signal = null } = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) query.set(k, v);
  const url = query.toString() ? `${path}?${query}` : path;
  const init = { method, signal };
  if (body !== null) { init.body = JSON.stringify(body); init.headers = { "Content-Type": "application/json" }; }
  const response = await fetch(url, init);
  const answer = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(answer.error || `${response.status} ${response.statusText}`);
  return answer;
}

// the runs a widget can show ({runs: [{name, family}], families}), or null after saying in
// `error` why there is none (the server's error, or no run of those families below RUNS_DIR)
export async function listRuns(path, error) {
  let listing;
  try {
    listing = await api(path);
  } catch (e) {
    error.show(e);
    return null;
  }
  if (!listing.runs.length) {
    error.show(`No run of ${listing.families.join(", ")} below RUNS_DIR: train one (seqlab train gpt --out RUNS_DIR/gpt).`);
    return null;
  }
  return listing;
}

// make an element: el("div", {class: "panel"}, child, "text", ...)
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// an element that shows the last error (empty: hidden)
export function errorBox() {
  const box = el("div", { class: "error", role: "alert" });
  box.show = (err) => { box.textContent = err ? String(err.message || err) : ""; };
  return box;
}

// a labelled range slider; onInput(value) on every move. The value is also shown.
export function slider(label, { min, max, step = 1, value, id }, onInput) {
  const input = el("input", { type: "range", min, max, step, value, id });
  const shown = el("output", {}, String(value));
  input.addEventListener("input", () => { shown.textContent = input.value; onInput(Number(input.value)); });
  const wrap = el("label", {}, label, input, shown);
  wrap.input = input;
  return wrap;
}

export function toggle(label, { checked = false, id }, onChange) {
  const input = el("input", { type: "checkbox", id });
  input.checked = checked;
  input.addEventListener("change", () => onChange(input.checked));
  const wrap = el("label", {}, input, label);
  wrap.input = input;
  return wrap;
}

// a drop-down of [value, text] pairs (or plain values)
export function choice(label, options, { value, id }, onChange) {
  const select = el("select", { id });
  for (const o of options) {
    const [v, text] = Array.isArray(o) ? o : [o, o];
    const opt = el("option", { value: v }, text);
    if (v === value) opt.selected = true;
    select.append(opt);
  }
  select.addEventListener("change", () => onChange(select.value));
  const wrap = el("label", {}, label, select);
  wrap.input = select;
  return wrap;
}

// an equation in the lecture's notation, typeset by the server (TeX without the $)
export function equation(tex) {
  return el("img", { class: "equation", alt: tex, src: `/api/equation.svg?tex=${encodeURIComponent(tex)}` });
}

export function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

// A line plot of several series [{name, y: [...], x?: [...], color}] into a new <svg>;
// log: a logarithmic y axis. Points that are not finite are left out.
export function linePlot(series, { width = 640, height = 300, log = false, xLabel = "", yLabel = "" } = {}) {
  const m = { l: 60, r: 120, t: 10, b: 36 };
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  const f = (v) => (log ? Math.log10(v) : v);
  const pts = series.flatMap((s) => s.y.map((y, i) => [s.x ? s.x[i] : i, y]))
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(f(y)));
  if (!pts.length) return root;
  const [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => f(p[1]))), Math.max(...pts.map((p) => f(p[1])))];
  if (y1 - y0 < 1e-12) { y0 -= 1; y1 += 1; }
  const X = (x) => m.l + ((x - x0) / (x1 - x0 || 1)) * (width - m.l - m.r);
  const Y = (y) => height - m.b - ((f(y) - y0) / (y1 - y0)) * (height - m.t - m.b);
  // the y axis: readable ticks (whole powers of ten on a log axis) with light grid lines
  const Yt = (v) => height - m.b - ((v - y0) / (y1 - y0)) * (height - m.t - m.b);  // v on the f scale
  for (const { at, label } of (log ? logTicks(y0, y1) : linearTicks(y0, y1))) {
    const y = Yt(at);
    root.append(svg("line", { x1: m.l, x2: width - m.r, y1: y.toFixed(1), y2: y.toFixed(1), stroke: "#e4e4e4",
      class: "grid" }));
    const t = svg("text", { x: m.l - 4, y: (y + 4).toFixed(1), "text-anchor": "end", class: "tick" });
    t.textContent = label;
    root.append(t);
  }
  root.append(svg("rect", { x: m.l, y: m.t, width: width - m.l - m.r, height: height - m.t - m.b,
    fill: "none", stroke: "#999" }));
  for (const [v, x] of [[x0, m.l], [x1, width - m.r]]) {
    const t = svg("text", { x, y: height - m.b + 14, "text-anchor": "middle" });
    t.textContent = String(v);
    root.append(t);
  }
  const xl = svg("text", { x: (m.l + width - m.r) / 2, y: height - 4, "text-anchor": "middle" });
  xl.textContent = xLabel;
  const yl = svg("text", { x: 12, y: height / 2, transform: `rotate(-90 12 ${height / 2})`, "text-anchor": "middle" });
  yl.textContent = yLabel;
  root.append(xl, yl);
  series.forEach((s, k) => {
    const color = s.color || ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"][k % 5];
    const d = s.y.map((y, i) => [s.x ? s.x[i] : i, y]).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(f(y)))
      .map(([x, y], i) => `${i ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join("");
    root.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 2, "data-series": s.name }));
    const label = svg("text", { x: width - m.r + 6, y: m.t + 14 + 16 * k, fill: color });
    label.textContent = s.name;
    root.append(label);
  });
  return root;
}

// A "nice" step (1, 2 or 5 times a power of ten) that cuts a span into about `count` parts.
function niceStep(span, count) {
  const raw = span / count, p = 10 ** Math.floor(Math.log10(raw));
  return p * ([1, 2, 5, 10].find((k) => k * p >= raw * 0.999) ?? 10);
}

// Ticks {at, label} of a linear axis from a to b: a few rounded values (at most about 6).
function linearTicks(a, b, count = 5) {
  const step = niceStep(b - a, count);
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const ticks = [];
  for (let k = Math.ceil(a / step - 1e-9); k * step <= b + step * 1e-9; k++) {
    const v = Math.abs(k * step) < step * 1e-9 ? 0 : k * step;
    ticks.push({ at: v, label: numberLabel(v, step, digits) });
  }
  return ticks;
}

// v written to the precision of the tick step: 0.25, 1500, or 2.5e-6 and 1.2e6 far from 1
function numberLabel(v, step, digits) {
  if (v === 0) return "0";
  if (v !== 0 && (Math.abs(v) >= 1e5 || Math.abs(v) < 1e-3)) {
    const shown = Math.max(0, Math.floor(Math.log10(Math.abs(v)) + 1e-9) - Math.floor(Math.log10(step) + 1e-9));
    return v.toExponential(Math.min(shown, 6)).replace("e+", "e");
  }
  return v.toFixed(digits);
}

// 10^e written readably: 1e-4, 1e-1, 1, 10, 100, 1e3
function powerLabel(e) {
  return e >= 0 && e <= 2 ? String(10 ** e) : `1e${e}`;
}

// Ticks {at, label} of a log axis whose ends are log10 values a < b: whole powers of ten
// (every k-th decade when there are many); within about a decade, 1-2-5 steps, or failing
// that rounded values on the linear scale, placed at their logarithms.
function logTicks(a, b) {
  const lo = Math.ceil(a - 1e-9), hi = Math.floor(b + 1e-9);
  if (hi - lo >= 1) {
    const every = Math.max(1, Math.ceil((hi - lo) / 6));
    const ticks = [];
    for (let e = Math.ceil(lo / every) * every; e <= hi; e += every) ticks.push({ at: e, label: powerLabel(e) });
    if (ticks.length >= 2) return ticks;
  }
  const ticks = [];
  for (let e = Math.floor(a); e <= Math.ceil(b); e++) {
    for (const d of [1, 2, 5]) {
      const at = e + Math.log10(d);
      if (at >= a - 1e-9 && at <= b + 1e-9) ticks.push({ at, label: numberLabel(d * 10 ** e, 10 ** e, Math.max(0, -e)) });
    }
  }
  if (ticks.length >= 2) return ticks;
  return linearTicks(10 ** a, 10 ** b, 3).filter((t) => t.at > 0)
    .map((t) => ({ at: Math.log10(t.at), label: t.label }));
}

// A heat map of a matrix (rows of numbers in [0, 1] by default) with row and column labels,
// drawn as SVG rectangles; each cell's title is its value.
export function heatmap(matrix, { rowLabels = [], colLabels = [], cell = 18, min = 0, max = 1 } = {}) {
  const left = 8 + 7 * Math.max(0, ...rowLabels.map((s) => String(s).length));
  const top = 8 + 7 * Math.max(0, ...colLabels.map((s) => String(s).length));
  const rows = matrix.length, cols = rows ? matrix[0].length : 0;
  const root = svg("svg", { width: left + cols * cell + 4, height: top + rows * cell + 4, role: "img" });
  matrix.forEach((row, i) => row.forEach((v, j) => {
    const t = Math.max(0, Math.min(1, (v - min) / (max - min || 1)));
    const shade = Math.round(255 * (1 - t));
    const r = svg("rect", { x: left + j * cell, y: top + i * cell, width: cell - 1, height: cell - 1,
      fill: `rgb(${shade},${shade},255)` });
    const title = svg("title");
    title.textContent = `${rowLabels[i] ?? i} → ${colLabels[j] ?? j}: ${Number(v).toFixed(3)}`;
    r.append(title);
    root.append(r);
  }));
  rowLabels.forEach((s, i) => {
    const t = svg("text", { x: left - 4, y: top + i * cell + cell * 0.7, "text-anchor": "end" });
    t.textContent = s;
    root.append(t);
  });
  colLabels.forEach((s, j) => {
    const x = left + j * cell + cell * 0.7;
    const t = svg("text", { x, y: top - 4, transform: `rotate(-90 ${x} ${top - 4})` });
    t.textContent = s;
    root.append(t);
  });
  return root;
}

// Run `task` after `ms` without a newer call: sliders send one request when they rest.
export function debounce(task, ms = 120) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => task(...args), ms); };
}
