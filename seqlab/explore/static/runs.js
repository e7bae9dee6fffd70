// The runs widget: the run directories under RUNS_DIR (family, steps, last losses), one run's
// training curves from its metrics.jsonl and its run.json, and the tour's report if there is one.
import { api, el, errorBox, choice, linePlot, svg } from "/static/common.js";

// a loss for the table: four significant digits, or a dash
function fmt(v) {
  return v === null || v === undefined ? "–" : String(Number(Number(v).toPrecision(4)));
}

// the table of runs; clicking a run's name calls onPick(name)
function runsTable(runs, onPick) {
  const head = el("tr", {}, ...["run", "family", "steps", "last train loss", "last val loss", "created"]
    .map((h) => el("th", {}, h)));
  const table = el("table", { id: "runs-table" }, head);
  for (const r of runs) {
    const link = el("a", { href: `?run=${encodeURIComponent(r.name)}`, "data-run": r.name }, r.name);
    link.addEventListener("click", (e) => { e.preventDefault(); onPick(r.name); });
    const row = el("tr", { "data-run": r.name },
      el("td", { style: "text-align:left" }, link), el("td", {}, r.family ?? "?"), el("td", {}, String(r.steps)),
      el("td", { class: "train-loss" }, fmt(r.train_loss)), el("td", { class: "val-loss" }, fmt(r.val_loss)),
      el("td", {}, r.created ? r.created.replace("T", " ").slice(0, 19) : "–"));
    if (r.error) row.append(el("td", { class: "error", style: "text-align:left" }, r.error));
    table.append(row);
  }
  return table;
}

// a dot on every logged point of the validation curves (as `seqlab plot` draws them), read
// back from the drawn paths: a curve of one evaluation is then still visible
function markPoints(plot, series) {
  for (const s of series.filter((x) => x.name === "val")) {
    const path = plot.querySelector(`path[data-series="${s.name}"]`);
    if (!path) continue;
    for (const [, x, y] of path.getAttribute("d").matchAll(/[ML](-?[\d.]+),(-?[\d.]+)/g))
      plot.append(svg("circle", { cx: x, cy: y, r: 3.5, fill: s.color, "data-point": s.name }));
  }
}

// one run's curves of `metric` (each split a line) and the last values as text
function drawCurves(box, run, metric) {
  box.replaceChildren();
  const splits = run.curves[metric] || {};
  const series = Object.entries(splits).map(([split, c]) => ({
    name: split, x: c.x, y: c.y, color: split === "val" ? "#d62728" : "#1f77b4" }));
  if (!series.length) { box.append(el("p", {}, "This run logged no metrics yet.")); return; }
  const plot = linePlot(series, { width: 700, height: 300, xLabel: "step", yLabel: metric });
  plot.id = "runs-plot";
  markPoints(plot, series);
  const last = series.map((s) => `${s.name}: ${fmt(s.y[s.y.length - 1])} at step ${s.x[s.x.length - 1]} ` +
    `(${s.y.length} point${s.y.length === 1 ? "" : "s"})`).join(" · ");
  box.append(plot, el("p", { id: "runs-last" }, `${metric}, last — ${last}`));
}

// mount the widget; ?run=NAME opens that run
export async function mount(root, params) {
  const error = errorBox();
  const listBox = el("div", { class: "panel" });
  const detail = el("div", {});
  root.append(el("p", {}, "Each run directory below RUNS_DIR, as written by ",
    el("code", {}, "seqlab train"), " or ", el("code", {}, "seqlab tour"),
    ". Pick a run to see its training curves (metrics.jsonl) and its configuration (run.json)."),
  error, listBox, detail);

  // show one run: metric choice, curves, configuration
  async function pick(name) {
    error.show(null);
    for (const row of listBox.querySelectorAll("tr[data-run]"))
      row.style.background = row.dataset.run === name ? "#e8ecff" : "";
    let run;
    try { run = await api("/api/runs/run", { run: name }); } catch (e) { error.show(e); return; }
    history.replaceState(null, "", `?run=${encodeURIComponent(name)}`);
    const curves = el("div", { class: "panel" });
    const problems = [run.config_error, run.metrics_error].filter(Boolean);
    const warn = el("div", { class: "error", id: "runs-run-error" }, problems.join(" · "));
    const metrics = run.metrics.length ? run.metrics : ["loss"];
    const pickMetric = choice("metric ", metrics, { value: metrics[0], id: "runs-metric" },
      (m) => drawCurves(curves, run, m));
    const config = el("pre", { id: "runs-config", class: "panel", style: "max-height: 22em; overflow: auto" },
      run.config ? JSON.stringify(run.config, null, 2) : "(run.json could not be read)");
    detail.replaceChildren(el("h2", { id: "runs-name" }, `${run.name} (${run.family ?? "unknown family"})`), warn,
      el("div", { class: "controls" }, pickMetric), curves, el("h3", {}, "Configuration (run.json)"), config);
    drawCurves(curves, run, metrics[0]);
  }

  let listing;
  try { listing = await api("/api/runs/list"); } catch (e) { error.show(e); return; }
  const report = listing.report
    ? el("p", {}, el("a", { id: "runs-report", href: listing.report, target: "_blank" }, "Open the tour report"))
    : el("p", { id: "runs-no-report" }, "No tour report in RUNS_DIR (seqlab tour writes one).");
  listBox.append(el("p", { id: "runs-count" }, `${listing.runs.length} run(s)`), report,
    listing.runs.length ? runsTable(listing.runs, pick) : el("p", {}, "No run directory (with run.json) here."));
  const wanted = params.get("run") || (listing.runs[0] && listing.runs[0].name);
  if (wanted) await pick(wanted);
}
