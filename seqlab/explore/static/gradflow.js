// The gradient-flow widget: ||dC/da_t|| over t on a log scale for a cell and a recurrent-weight
// scale (GET /api/gradflow, seqlab.recurrent.gradflow's measurement), the fitted factor per step
// back, and what gradient-norm clipping does: it rescales the parameter gradient, so every
// step's term shrinks by the same factor and the curve moves down without changing its slope.
import { api, choice, debounce, el, equation, errorBox, linePlot, slider, toggle } from "./common.js";

// a number as the command's table writes it (Python's "%.1e": 1.2e-05; 0; "-" for none)
function num(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "-";
  if (v === 0) return "0";
  const [mantissa, exponent] = v.toExponential(1).split("e");
  const e = Number(exponent);
  return `${mantissa}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
}

// the table of ||dC/da_t|| at t = T - k (k = 0, 10, 50, 100 as far as T allows), as `seqlab gradflow`
function valuesTable(answer) {
  const ks = Object.keys(answer.at_steps_back);
  const head = el("tr", {}, el("th", {}, "t"), ...ks.map((k) => el("th", {}, k === "0" ? "T" : `T−${k}`)));
  const row = (label, values, prefix) => el("tr", {}, el("th", {}, label),
    ...ks.map((k, i) => el("td", { id: `${prefix}-${k}` }, num(values[i]))));
  const T = answer.t.length;
  const rows = [row("||∂C/∂a_t||", ks.map((k) => answer.at_steps_back[k]), "gradflow-at")];
  if (answer.clipping.grad_norm) {
    rows.push(row("after clipping", ks.map((k) => answer.clipping.grad_norm[T - 1 - Number(k)]), "gradflow-clipped-at"));
  }
  return el("table", { id: "gradflow-table" }, head, ...rows);
}

// the lines about clipping: ||g|| before and after, the factor, and what that means for the curve
function clippingText(c) {
  if (!c.on) {
    return el("p", {}, "Clipping off. The parameter gradient g = ∂C/∂θ has norm ",
      el("span", { id: "gradflow-norm-before", class: "number" }, num(c.param_grad_norm)), ".");
  }
  return el("p", {}, "Clipping at c = ", el("span", { class: "number" }, String(c.threshold)), ": ||g|| = ",
    el("span", { id: "gradflow-norm-before", class: "number" }, num(c.param_grad_norm)), " before, ",
    el("span", { id: "gradflow-norm-after", class: "number" }, num(c.param_grad_norm_after)), " after (torch's clip_grad_norm_), factor ",
    el("span", { id: "gradflow-factor", class: "number" }, num(c.factor)), ". ",
    c.clipped ? "Every term dC/da_t · ∂a_t/∂θ of g is scaled by that factor: the red curve is the blue one times it — " +
      "the same slope, so clipping bounds the step of an exploding gradient but does not bring back a vanishing one."
      : "||g|| ≤ c, so nothing changes: the curves coincide.");
}

// mount(root, params): cell, scale, T and clipping controls and the live plot.
// URL parameters: cell, scale, T, clip (a threshold turns clipping on).
export function mount(root, params) {
  const state = {
    cell: params.get("cell") || "rnn",
    scale: Number(params.get("scale") || 1),
    T: Number(params.get("T") || 50),
    clipping: params.has("clip"),
    clip: Number(params.get("clip") || 1),
  };
  const error = errorBox();
  const plot = el("div", { class: "panel", id: "gradflow-plot" });
  const rate = el("span", { id: "gradflow-rate", class: "number" });
  const slope = el("span", { id: "gradflow-slope", class: "number" });
  const verdict = el("span", { id: "gradflow-verdict", class: "number" });
  const fit = el("p", {}, "Fitted: ||∂C/∂a_t|| is multiplied by ", rate, " per step back (slope ", slope,
    " in log₁₀ per step): ", verdict, ".");
  const table = el("div", { class: "panel" });
  const clipBox = el("div");
  const cli = el("pre", { id: "gradflow-cli", class: "panel", style: "white-space: pre-wrap" });

  let seq = 0;
  // ask the server for the current settings and redraw; answers to older requests are dropped
  const refresh = async () => {
    const mine = ++seq;
    const query = { cell: state.cell, scale: state.scale, T: state.T, clipping: state.clipping, clip: state.clip };
    try {
      const answer = await api("/api/gradflow", query);
      if (mine !== seq) return;
      error.show(null);
      const series = [{ name: "||∂C/∂a_t||", x: answer.t, y: answer.grad_norm.map((v) => (v === null ? NaN : v)), color: "#1f77b4" }];
      if (answer.clipping.grad_norm) {
        series.push({ name: "after clipping", x: answer.t, y: answer.clipping.grad_norm.map((v) => (v === null ? NaN : v)), color: "#d62728" });
      }
      const chart = linePlot(series, { width: 900, height: 320, log: true, xLabel: "t", yLabel: "||∂C/∂a_t|| (log scale)" });
      chart.id = "gradflow-chart";
      chart.dataset.cell = answer.settings.cell;
      plot.replaceChildren(chart);
      rate.textContent = answer.rate === null ? "-" : `×${answer.rate.toFixed(3)}`;
      slope.textContent = answer.slope === null ? "-" : answer.slope.toFixed(4);
      verdict.textContent = answer.verdict;
      table.replaceChildren(valuesTable(answer));
      clipBox.replaceChildren(clippingText(answer.clipping));
      cli.textContent = `same measurement: ${answer.command}`;
      root.dataset.ready = `${answer.settings.cell}/${answer.settings.scale}/${answer.settings.length}/${answer.clipping.on}`;
    } catch (err) {
      if (mine === seq) error.show(err);
    }
  };
  const later = debounce(refresh, 100);

  const clipSlider = slider("c", { min: 0.1, max: 10, step: 0.1, value: state.clip, id: "gradflow-clip" },
    (v) => { state.clip = v; if (state.clipping) later(); });
  const controls = el("div", { class: "controls" },
    choice("Cell", [["rnn", "RNN"], ["lstm", "LSTM"], ["gru", "GRU"]], { value: state.cell, id: "gradflow-cell" },
      (v) => { state.cell = v; refresh(); }),
    slider("Weight scale s", { min: 0.1, max: 3, step: 0.05, value: state.scale, id: "gradflow-scale" },
      (v) => { state.scale = v; later(); }),
    slider("T", { min: 2, max: 200, value: state.T, id: "gradflow-T" }, (v) => { state.T = v; later(); }),
    toggle("Gradient clipping", { checked: state.clipping, id: "gradflow-clipping" },
      (on) => { state.clipping = on; refresh(); }),
    clipSlider);

  root.append(
    el("p", {}, "Remember the first symbol: the cost at the end of the sequence depends only on x₁, so its gradient " +
      "must travel back through every step. The recurrent matrices are s times random orthogonal matrices (the LSTM " +
      "and GRU keep most of their memory: forget-gate bias 4); H = 16, 8 sequences (geometric mean)."),
    equation("\\frac{\\partial C}{\\partial a_t} = \\frac{\\partial C}{\\partial a_T} \\frac{\\partial a_T}{\\partial a_{T-1}} \\cdots \\frac{\\partial a_{t+1}}{\\partial a_t}"),
    equation("\\mathrm{clipping:}\\quad g = \\frac{\\partial C}{\\partial \\theta} = \\sum_{t=1}^{T} \\frac{\\partial C}{\\partial a_t} \\frac{\\partial a_t}{\\partial \\theta},\\quad \\mathrm{if}\\ \\Vert g \\Vert > c:\\ g \\leftarrow g \\frac{c}{\\Vert g \\Vert}"),
    controls, error, plot, fit, table, clipBox, cli);
  refresh();
}
