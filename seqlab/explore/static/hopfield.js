// The Hopfield widget: draw or pick a pattern on an 8 x 8 grid, corrupt it, and run the
// asynchronous recall one unit update at a time, with the energy E after every update.
// The server keeps no state: every request carries the stored patterns, the rule, the
// current state and where the update order stands (seed, offset, position).
import { api, el, errorBox, slider, choice, equation, linePlot, svg } from "/static/common.js";

const SIDE = 8;
const CELL = 26;
const RULE_TEX = {
  "hebbian": String.raw`w_{ij} = \frac{1}{N}\sum_p a_i^{(p)} a_j^{(p)}\quad (i \neq j)`,
  "pseudo-inverse": String.raw`W = X^{\top}(X X^{\top})^{-1} X,\quad w_{ii} = 0`,
  "storkey": String.raw`w_{ij} \leftarrow w_{ij} + \frac{1}{N}(e_i e_j - e_i h_{ji} - h_{ij} e_j)`,
};

// an SVG grid of +1 (dark) / -1 (light) cells; onClick(i) when a cell is clicked; `mark`
// outlines one unit (the one updated last)
function grid(state, { id, cell = CELL, mark = -1, onClick = null } = {}) {
  const root = svg("svg", { width: SIDE * cell + 2, height: SIDE * cell + 2, role: "img" });
  if (id) root.id = id;
  state.forEach((v, i) => {
    const r = svg("rect", { x: 1 + (i % SIDE) * cell, y: 1 + Math.floor(i / SIDE) * cell, width: cell - 1,
      height: cell - 1, fill: v > 0 ? "#223" : "#eef", "data-i": i, "data-v": v,
      stroke: i === mark ? "#e33" : "none", "stroke-width": i === mark ? 3 : 0 });
    if (onClick) { r.style.cursor = "pointer"; r.addEventListener("click", () => onClick(i)); }
    root.append(r);
  });
  return root;
}

// mount the widget (params: rule, seed)
export async function mount(root, params) {
  const error = errorBox();
  const s = {
    digits: [0, 1, 2, 3, 4], drawn: [], rule: params.get("rule") || "pseudo-inverse",
    seed: Math.max(0, Math.floor(Number(params.get("seed")) || 0)), noise: 0.2, occlude: "",
    start: null, offset: 0, state: null, position: 0, energies: [], positions: [], last: -1, fixed: false,
  };
  let prototypes = [];

  const gridBox = el("div", {});
  const plotBox = el("div", {});
  const info = {
    position: el("span", { class: "number", id: "hopfield-position" }),
    energy: el("span", { class: "number", id: "hopfield-energy" }),
    fixed: el("span", { id: "hopfield-fixed" }),
    last: el("span", { id: "hopfield-last" }),
  };
  const overlapBox = el("div", { id: "hopfield-overlaps" });
  const ruleEq = el("div", {});
  const compareBox = el("div", { id: "hopfield-compare-result" });

  // the body every request carries: what is stored and how
  const stored = () => ({ side: SIDE, digits: s.digits, patterns: s.drawn, rule: s.rule });

  // redraw the grid, the numbers and the energy curve from the client's copy of the state
  function draw() {
    gridBox.replaceChildren(grid(s.state, { id: "hopfield-grid", mark: s.last, onClick: flip }));
    info.position.textContent = String(s.position);
    info.energy.textContent = s.energies.length ? s.energies[s.energies.length - 1].toFixed(4) : "–";
    info.fixed.textContent = s.fixed ? "fixed point: no unit would change" : "not a fixed point yet";
    const plot = linePlot([{ name: "E", x: s.positions, y: s.energies }],
      { width: 460, height: 260, xLabel: "updates t", yLabel: "energy E" });
    plot.id = "hopfield-energy-plot";
    plotBox.replaceChildren(plot);
  }

  // ask the server for `steps` more updates (0: just E of the current state)
  async function advance(steps, untilFixed = false) {
    error.show(null);
    try {
      const r = await api("/api/hopfield/step", {}, { method: "POST", body: { ...stored(), state: s.state,
        seed: s.seed, offset: s.offset, position: s.position, steps, until_fixed: untilFixed } });
      const firstNew = steps === 0 ? 0 : 1;
      for (let k = firstNew; k < r.energies.length; k++) {
        s.energies.push(r.energies[k]);
        s.positions.push(s.position + k);
      }
      s.state = r.state;
      s.position = r.position;
      s.fixed = r.fixed_point;
      if (r.units.length) {
        const i = r.units[r.units.length - 1];
        s.last = i;
        const changed = r.changes.filter((c) => c[1] === i && c[0] === r.position - 1).length > 0;
        info.last.textContent = `last update: unit ${i} (row ${Math.floor(i / SIDE)}, column ${i % SIDE})` +
          (changed ? ` flipped to ${r.state[i] > 0 ? "+1" : "-1"}` : " kept its value") +
          ` · ${r.units.length} update(s), ${r.changes.length} flip(s) in this request`;
      } else info.last.textContent = "";
      overlapBox.replaceChildren(el("table", {}, el("tr", {}, el("th", {}, "stored"), el("th", {}, "overlap m_p")),
        ...Object.entries(r.overlaps).map(([k, m]) => el("tr", {}, el("td", {}, k), el("td", {}, m.toFixed(3))))));
      draw();
    } catch (e) { error.show(e); }
  }

  // start a new recall from `state` (the corruption drew `offset` random orders)
  async function restart(state, offset = 0) {
    Object.assign(s, { start: state.slice(), state: state.slice(), offset, position: 0, energies: [], positions: [],
      last: -1, fixed: false });
    await advance(0);
  }

  // clicking a cell flips it: the edited grid is a new start
  function flip(i) {
    const next = s.state.slice();
    next[i] = -next[i];
    restart(next);
  }

  async function corrupt() {
    error.show(null);
    try {
      const r = await api("/api/hopfield/start", {}, { method: "POST", body: { side: SIDE, pattern: s.state,
        noise: s.noise, occlude: s.occlude || null, seed: s.seed } });
      await restart(r.state, r.offset);
    } catch (e) { error.show(e); }
  }

  // recall from the start state under each rule (HopfieldNetwork.recall), side by side
  async function compare() {
    error.show(null);
    try {
      const r = await api("/api/hopfield/compare", {}, { method: "POST",
        body: { ...stored(), state: s.start, seed: s.seed, offset: s.offset } });
      compareBox.replaceChildren(...r.rules.map((x) => el("div", { class: "panel", "data-rule": x.rule,
        style: "display:inline-block; margin-right:1em; text-align:center" },
      el("div", {}, el("b", {}, x.rule)), grid(x.state, { cell: 12 }),
      el("div", { class: "compare-line" }, `${x.match}${x.exact ? " (exact)" : ""}, m = ${x.overlap.toFixed(3)}`),
      el("div", {}, `${x.steps} updates, E ${x.energy_start.toFixed(2)} → ${x.energy_end.toFixed(2)}`))));
    } catch (e) { error.show(e); }
  }

  function showRule() {
    ruleEq.replaceChildren(equation(RULE_TEX[s.rule]));
  }

  // controls
  const digitButtons = el("span", {}, "load digit ", ...[...Array(10).keys()].map((d) =>
    el("button", { id: `hopfield-digit-${d}`, onclick: () => restart(prototypes[d]) }, String(d))));
  const storeBoxes = el("span", {}, "stored digits ", ...[...Array(10).keys()].map((d) => {
    const box = el("input", { type: "checkbox", id: `hopfield-store-${d}` });
    box.checked = s.digits.includes(d);
    box.addEventListener("change", () => {
      s.digits = [...Array(10).keys()].filter((k) => document.getElementById(`hopfield-store-${k}`).checked);
      restart(s.start, s.offset);
    });
    return el("label", {}, box, String(d));
  }));
  const drawnCount = el("span", { id: "hopfield-drawn" }, "0 drawn");
  const storeGrid = el("button", { id: "hopfield-store-grid", onclick: () => {
    s.drawn.push(s.state.slice());
    drawnCount.textContent = `${s.drawn.length} drawn`;
    restart(s.start, s.offset);
  } }, "store the grid");
  const forget = el("button", { id: "hopfield-forget", onclick: () => {
    s.drawn = [];
    drawnCount.textContent = "0 drawn";
    restart(s.start, s.offset);
  } }, "forget drawn");
  const rule = choice("rule ", ["hebbian", "pseudo-inverse", "storkey"], { value: s.rule, id: "hopfield-rule" },
    (v) => { s.rule = v; showRule(); restart(s.start, s.offset); });
  const noise = slider("noise ", { min: 0, max: 0.5, step: 0.05, value: s.noise, id: "hopfield-noise" },
    (v) => { s.noise = v; });
  const occlude = choice("blank ", [["", "none"], "top", "bottom", "left", "right"], { value: "", id: "hopfield-occlude" },
    (v) => { s.occlude = v; });
  const seed = el("input", { type: "number", min: 0, max: 2147483647, value: s.seed, id: "hopfield-seed",
    style: "width:6em" });
  seed.addEventListener("change", () => { s.seed = Math.max(0, Math.floor(Number(seed.value) || 0)); restart(s.start); });
  const buttons = el("span", {},
    el("button", { id: "hopfield-corrupt", onclick: corrupt }, "corrupt"),
    el("button", { id: "hopfield-step", onclick: () => advance(1) }, "step"),
    el("button", { id: "hopfield-step10", onclick: () => advance(10) }, "10 steps"),
    el("button", { id: "hopfield-run", onclick: () => advance(5000, true) }, "run to a fixed point"),
    el("button", { id: "hopfield-reset", onclick: () => restart(s.start, s.offset) }, "back to the start"),
    el("button", { id: "hopfield-compare", onclick: compare }, "compare rules"));

  root.append(
    el("p", {}, "Click cells to draw, or load a digit prototype (8 × 8 scikit-learn digits, thresholded at the " +
      "median). Corrupt it, then update one unit at a time in a random order (a new order every sweep over the " +
      "N = 64 units): the energy never rises."),
    equation(String.raw`E = -\frac{1}{2}\sum_{i,j} w_{ij} a_i a_j - \sum_i b_i a_i`),
    equation(String.raw`a_i \leftarrow +1 \;\mathrm{if}\; \sum_{j \neq i} w_{ij} a_j + b_i > 0,\; -1 \;\mathrm{otherwise}`),
    el("div", { class: "controls" }, digitButtons),
    el("div", { class: "controls" }, storeBoxes, storeGrid, forget, drawnCount, rule),
    ruleEq,
    el("div", { class: "controls" }, noise, occlude, el("label", {}, "seed ", seed), buttons),
    error,
    el("div", { style: "display:flex; gap:1.5em; flex-wrap:wrap; align-items:flex-start" },
      el("div", { class: "panel" }, gridBox), el("div", { class: "panel" }, plotBox),
      el("div", { class: "panel" }, overlapBox)),
    el("p", {}, "t = ", info.position, " updates · E = ", info.energy, " · ", info.fixed),
    el("p", {}, info.last),
    el("p", {}, "b = 0 here. m_p = a · a^(p) / N is the overlap with stored pattern p."),
    compareBox);
  showRule();
  try {
    prototypes = (await api("/api/hopfield/patterns")).patterns;
  } catch (e) { error.show(e); return; }
  await restart(prototypes[Number(params.get("digit") ?? 3)] || prototypes[3]);
}
