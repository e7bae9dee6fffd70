// The unfold widget: the lecture's "use the slider to unfold the network" question.
// The server unrolls the RNN and reads from its autograd graph which weight copies dC/dW
// uses (GET /api/unfold, the same answer as `seqlab unfold --json`); this module draws the
// unrolled graph as SVG with those copies highlighted, and the chain-rule sum.
import { api, choice, debounce, el, equation, errorBox, slider, svg, toggle } from "./common.js";

const COL = 104; // horizontal distance between time steps (px)
const ROW = 84; // vertical distance between rows: input, layers 1..L, output
const R = 17; // node radius
const SUB = "₀₁₂₃₄₅₆₇₈₉";
const SUP = { "(": "⁽", ")": "⁾", 1: "¹", 2: "²", 3: "³" };

// "a", 12 -> "a₁₂"; layer 2 of several -> "a⁽²⁾₁₂" (the lecture's a^(l)_t)
function nodeLabel(symbol, t, layer = 0) {
  const sub = String(t).split("").map((d) => SUB[d]).join("");
  const sup = layer ? `(${layer})`.split("").map((c) => SUP[c]).join("") : "";
  return symbol + sup + sub;
}

// the copy name seqlab uses: w_x@3, or w_x[2]@3 with several layers (w_o, b_o never layered)
function copyName(weight, t, layer, layers) {
  return layers > 1 && !weight.endsWith("_o") ? `${weight}[${layer}]@${t}` : `${weight}@${t}`;
}

// "used receives" / "used multiplies" / "unused": how the copy takes part in dC/dW
function role(name, answer) {
  if (answer.receives.includes(name)) return "used receives";
  if (answer.multiplies.includes(name)) return "used multiplies";
  return "unused";
}

const COLOURS = { "used receives": "#d62728", "used multiplies": "#e67e00", unused: "#aaa" };

// The unrolled network as an <svg>: columns t = 0 (a_0 = 0) .. T; rows from the bottom: x_t,
// a^(1)_t .. a^(L)_t, the outputs. Every weight copy is one <g class="copy ..." data-copy=name>
// (an arrow with its label, or a bias written beside its node).
function drawGraph(answer) {
  const { length: T, layers: L, output } = answer;
  const width = (T + 1) * COL + 70, height = (L + 1) * ROW + 60;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "unfold-graph", role: "img" });
  const defs = svg("defs");
  for (const [key, colour] of Object.entries(COLOURS)) {
    const marker = svg("marker", { id: `arrow-${key.replace(" ", "-")}`, viewBox: "0 0 10 10", refX: 10, refY: 5,
      markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: colour }));
    defs.append(marker);
  }
  root.append(defs);
  const X = (t) => 40 + t * COL;
  const Y = (row) => height - 30 - row * ROW; // row 0: inputs, 1..L: layers, L+1: outputs

  const text = (x, y, s, attrs = {}) => { const n = svg("text", { x, y, ...attrs }); n.textContent = s; return n; };
  const node = (x, y, label, fill) => {
    const g = svg("g", { class: "node" });
    g.append(svg("circle", { cx: x, cy: y, r: R, fill, stroke: "#333" }),
      text(x, y + 4, label, { "text-anchor": "middle", style: "font-size: 12px" }));
    root.append(g);
  };
  // an arrow from (x0, y0) to (x1, y1) for the weight copy `name`, its label at the middle
  const edge = (x0, y0, x1, y1, name) => {
    const r = role(name, answer);
    const len = Math.hypot(x1 - x0, y1 - y0), ux = (x1 - x0) / len, uy = (y1 - y0) / len;
    const g = svg("g", { class: `copy ${r}`, "data-copy": name });
    g.append(svg("line", { x1: x0 + ux * R, y1: y0 + uy * R, x2: x1 - ux * (R + 2), y2: y1 - uy * (R + 2),
      stroke: COLOURS[r], "stroke-width": r === "unused" ? 1 : 2.6, "marker-end": `url(#arrow-${r.replace(" ", "-")})` }));
    const vertical = Math.abs(x1 - x0) < 1;
    g.append(text((x0 + x1) / 2 + (vertical ? 5 : 0), (y0 + y1) / 2 + (vertical ? 4 : 15), name,
      { "text-anchor": vertical ? "start" : "middle", fill: COLOURS[r], "font-weight": r === "unused" ? "normal" : "bold" }));
    root.append(g);
  };
  // a bias copy written to the upper right of its node
  const bias = (x, y, name) => {
    const r = role(name, answer);
    const g = svg("g", { class: `copy ${r}`, "data-copy": name });
    g.append(text(x + R - 2, y - R + 2, `+${name}`, { fill: COLOURS[r], "font-weight": r === "unused" ? "normal" : "bold" }));
    root.append(g);
  };

  for (let l = 1; l <= L; l++) node(X(0), Y(l), "0", "#eee");
  for (let t = 1; t <= T; t++) {
    node(X(t), Y(0), nodeLabel("x", t), "#cfe2f3");
    for (let l = 1; l <= L; l++) {
      edge(X(t), Y(l - 1), X(t), Y(l), copyName("w_x", t, l, L));
      edge(X(t - 1), Y(l), X(t), Y(l), copyName("w_a", t, l, L));
      node(X(t), Y(l), nodeLabel("a", t, L > 1 ? l : 0), "#d9ead3");
      bias(X(t), Y(l), copyName("b_a", t, l, L));
    }
    if (output === "sequence" || t === T) {
      edge(X(t), Y(L), X(t), Y(L + 1), copyName("w_o", t, 0, L));
      node(X(t), Y(L + 1), output === "sequence" ? nodeLabel("o", t) : "o", "#fce5cd");
      bias(X(t), Y(L + 1), copyName("b_o", t, 0, L));
    }
  }
  return root;
}

// The lecture's chain-rule sum: the closed form, then the terms written out, one typeset line each
function drawSum(chain) {
  const box = el("div", { id: "unfold-sum" });
  for (const tex of chain.general) box.append(equation(tex));
  if (chain.written.length) {
    box.append(el("p", {}, "Written out, term by term:"));
    for (const tex of chain.written) box.append(equation(tex));
  }
  return box;
}

// mount(root, params): controls (T, output is a sequence, layers, W) and the drawing, which is
// redrawn from the server's answer whenever a control moves. URL parameters: T, output, layers, wrt.
export function mount(root, params) {
  const state = {
    T: Number(params.get("T") || 5),
    output: params.get("output") || "sequence",
    layers: Number(params.get("layers") || 1),
    wrt: params.get("wrt") || "w_x",
  };
  const error = errorBox();
  const count = el("span", { id: "unfold-count", class: "number" });
  const receives = el("span", { id: "unfold-receives", class: "number" });
  const multiplies = el("span", { id: "unfold-multiplies", class: "number" });
  const summary = el("p", { id: "unfold-summary" }, "Weight copies used for ∂C/∂", el("span", { id: "unfold-wrt" }),
    ": ", count, " (", receives, " receive gradient, ", multiplies, " multiply along a backward path; a copy may do both)");
  const picture = el("div", { class: "panel" });
  const legend = el("p", {}, el("span", { style: `color:${COLOURS["used receives"]};font-weight:bold` }, "red"),
    ": a copy of W that receives gradient (∂aₜ/∂W); ",
    el("span", { style: `color:${COLOURS["used multiplies"]};font-weight:bold` }, "orange"),
    ": a copy that multiplies the gradient on its way from C to W (∂aₖ/∂aₖ₋₁ uses w_a@k, ∂oₜ/∂aₜ uses w_o@t, " +
    "∂a⁽ˡ⁺¹⁾ₜ/∂a⁽ˡ⁾ₜ uses w_x[l+1]@t); grey: not used. Read from the autograd graph of the unrolled network.");
  const sum = el("div", { class: "panel" });
  const cli = el("pre", { id: "unfold-cli", class: "panel", style: "white-space: pre-wrap; word-break: break-all" });

  const wrtWrap = el("span");
  let seq = 0;
  // ask the server for the current state and redraw; answers to older requests are dropped
  const refresh = async () => {
    const mine = ++seq;
    try {
      const answer = await api("/api/unfold", { T: state.T, output: state.output, layers: state.layers, wrt: state.wrt });
      if (mine !== seq) return;
      error.show(null);
      count.textContent = answer.count;
      receives.textContent = answer.receives.length;
      multiplies.textContent = answer.multiplies.length;
      summary.querySelector("#unfold-wrt").textContent = answer.wrt;
      picture.replaceChildren(drawGraph(answer));
      sum.replaceChildren(drawSum(answer.chain_rule),
        el("p", {}, answer.chain_rule.terms === null ? "With several layers the paths branch between the layers."
          : `${answer.chain_rule.terms} product${answer.chain_rule.terms === 1 ? "" : "s"} in the sum.`));
      cli.textContent = `$ ${answer.command}\n${JSON.stringify(answer.json)}`;
      root.dataset.ready = `${answer.length}/${answer.output}/${answer.layers}/${answer.wrt}`;
    } catch (err) {
      if (mine === seq) error.show(err);
    }
  };
  const later = debounce(refresh, 80);

  // the W choices depend on the number of layers (seqlab.recurrent.unfold.valid_wrt)
  const wrtChoices = (layers) => {
    const names = layers === 1 ? ["w_x", "w_a", "b_a", "w_o", "b_o"]
      : [..."xab"].flatMap((k) => [...Array(layers).keys()].map((i) => `${k === "b" ? "b_a" : `w_${k}`}[${i + 1}]`))
        .concat(["w_o", "b_o"]);
    if (!names.includes(state.wrt)) {
      const base = state.wrt.split("[")[0];
      state.wrt = names.find((n) => n.startsWith(base)) || names[0];
    }
    wrtWrap.replaceChildren(choice("W = ", names, { value: state.wrt, id: "unfold-wrt-choice" },
      (v) => { state.wrt = v; refresh(); }));
  };
  wrtChoices(state.layers);

  const controls = el("div", { class: "controls" },
    slider("Input sequence length T", { min: 1, max: 20, value: state.T, id: "unfold-T" }, (v) => { state.T = v; later(); }),
    toggle("Output is also a sequence", { checked: state.output === "sequence", id: "unfold-sequence" },
      (on) => { state.output = on ? "sequence" : "last"; refresh(); }),
    slider("Layers", { min: 1, max: 3, value: state.layers, id: "unfold-layers" },
      (v) => { state.layers = v; wrtChoices(v); later(); }),
    wrtWrap);

  root.append(
    el("p", {}, "Which weights (including copies of the same weight) are used in one backpropagation-through-time " +
      "step when computing ∂C/∂W? Unfold the network and see."),
    equation("a_t = g(w^{(a)} a_{t-1} + w^{(x)} x_t + b^{(a)}),\\quad o_t = g(w^{(o)} a_t + b^{(o)})"),
    controls, error, summary, picture, legend, sum, cli);
  refresh();
}
