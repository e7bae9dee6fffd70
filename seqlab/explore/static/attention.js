// The attention widget: type a text, see the attention weights g(a^(q)_s . a^(k)_t / sqrt(m))
// of a GPT or BERT run, layer by layer and head by head, with the causal mask on or off, and
// the model's output distribution (GPT: the next token; BERT: the filler of each [MASK]).
import { api, choice, debounce, el, equation, errorBox, heatmap, listRuns, slider, svg, toggle } from "/static/common.js";

const DEFAULT_TEXT = { gpt: "def f(x):", bert: "def f([MASK]):" };

// the colour scale of heatmap(): white (0) to blue (1), with its ends labelled
function colourScale(width = 160) {
  const root = svg("svg", { width: width + 70, height: 30, role: "img", id: "attention-scale" });
  for (let i = 0; i < 32; i++) {
    const shade = Math.round(255 * (1 - i / 31));
    root.append(svg("rect", { x: 20 + (i * width) / 32, y: 4, width: width / 32 + 0.5, height: 12,
      fill: `rgb(${shade},${shade},255)` }));
  }
  for (const [v, x] of [["0", 14], ["1", width + 26]]) {
    const t = svg("text", { x, y: 14 });
    t.textContent = v;
    root.append(t);
  }
  const t = svg("text", { x: 20, y: 28 });
  t.textContent = "attention weight (each row sums to 1)";
  root.append(t);
  return root;
}

// one head's map (queries s down, keys t across); a click on a cell shows its exact weight
function headMap(map, tokens, showCell) {
  const drawn = heatmap(map.weights, { rowLabels: tokens, colLabels: tokens, cell: tokens.length > 32 ? 12 : 18 });
  const rects = drawn.querySelectorAll("rect");
  const S = tokens.length;
  rects.forEach((r, k) => {
    const [s, t] = [Math.floor(k / S), k % S];
    r.dataset.s = s;
    r.dataset.t = t;
    r.style.cursor = "pointer";
    r.addEventListener("click", () => showCell(map, s, t));
  });
  return el("figure", { class: "attention-map", "data-layer": map.layer, "data-head": map.head, "data-size": S },
    drawn, el("figcaption", {}, `layer ${map.layer}, head ${map.head}`));
}

// the output distribution as a table of tokens and probabilities, with bars
function outputTable(outputs, tokens) {
  const wrap = el("div", { id: "attention-outputs" });
  for (const out of outputs) {
    const rows = out.top.map((o) => el("tr", {},
      el("td", { class: "token" }, o.token),
      el("td", { class: "number", "data-p": o.p }, o.p.toFixed(4)),
      el("td", { style: "text-align:left" }, el("span", { style: `display:inline-block;height:0.8em;background:#55f;width:${Math.round(300 * o.p)}px` }))));
    wrap.append(el("p", {}, `position ${out.position + 1} (${tokens[out.position]}):`),
      el("table", { class: "attention-top" }, el("tr", {}, el("th", {}, "token"), el("th", {}, "probability"), el("th", {}, "")), ...rows));
  }
  return wrap;
}

// mount the widget in `root`; params: ?run=NAME&text=...&layer=&head=
export async function mount(root, params) {
  const error = errorBox();
  const controls = el("div", { class: "controls" });
  const info = el("p", { id: "attention-info" });
  const cell = el("p", { id: "attention-cell" }, "Click a cell to read its weight.");
  const maps = el("div", { id: "attention-maps", class: "panel", style: "display:flex;flex-wrap:wrap;gap:0 1.5em" });
  const outputsTitle = el("h2", { id: "attention-outputs-title" }, "Output distribution");
  const outputs = el("div", { class: "panel" });
  root.append(
    el("p", {}, "The weight of key t for query s in head j, and the causal mask of a GPT (query s sees keys t \u2264 s):"),
    equation("c_{j,s} = \\sum_t g(a^{(q)}_{j,s} \\cdot a^{(k)}_{j,t} / \\sqrt{m})\\, a^{(v)}_{j,t}, \\quad g = \\mathrm{softmax}_t, \\quad \\mathrm{causal\\ mask:}\\ s \\geq t"),
    controls, error, info, colourScale(), cell, maps, outputsTitle, outputs);

  const listing = await listRuns("/api/attention/runs", error);
  if (!listing) return;
  const familyOf = Object.fromEntries(listing.runs.map((r) => [r.name, r.family]));
  const state = {
    run: familyOf[params.get("run")] ? params.get("run") : listing.runs[0].name,
    layer: Number(params.get("layer") || 1),
    head: Number(params.get("head") || 0),
    causal: null, // null: the model's own mask
  };
  state.text = params.get("text") || DEFAULT_TEXT[familyOf[state.run]] || "def f(x):";

  const runChoice = choice("run", listing.runs.map((r) => [r.name, `${r.name} (${r.family})`]), { value: state.run, id: "attention-run" },
    (v) => {
      // a new run: its own mask, layer 1, every head, and its family's example if the text was one
      if (Object.values(DEFAULT_TEXT).includes(state.text)) text.value = state.text = DEFAULT_TEXT[familyOf[v]] || state.text;
      Object.assign(state, { run: v, causal: null, layer: 1, head: 0 });
      refresh();
    });
  const text = el("input", { type: "text", id: "attention-text", size: 40, value: state.text, maxlength: 400 });
  text.addEventListener("input", debounce(() => { state.text = text.value; refresh(); }, 200));
  const layer = slider("layer", { min: 1, max: 1, value: 1, id: "attention-layer" }, (v) => { state.layer = v; refresh(); });
  const head = slider("head (0 = all)", { min: 0, max: 1, value: 0, id: "attention-head" }, (v) => { state.head = v; refresh(); });
  const mask = toggle("causal mask", { checked: true, id: "attention-causal" }, (on) => { state.causal = on; refresh(); });
  controls.append(runChoice, el("label", {}, "text", text), layer, head, mask);

  // show the exact weight of a clicked cell (and outline the cell)
  function showCell(map, s, t) {
    maps.querySelectorAll("rect.picked").forEach((r) => { r.classList.remove("picked"); r.removeAttribute("stroke"); });
    const picked = maps.querySelector(`figure[data-head="${map.head}"] rect[data-s="${s}"][data-t="${t}"]`);
    if (picked) { picked.classList.add("picked"); picked.setAttribute("stroke", "#d62728"); picked.setAttribute("stroke-width", "2"); }
    const w = map.weights[s][t];
    cell.textContent = `layer ${map.layer}, head ${map.head}: query s = ${s + 1} (${lastTokens[s]}) \u2192 key t = ${t + 1} (${lastTokens[t]}): ${w.toFixed(6)}`;
    cell.dataset.weight = w;
    cell.dataset.s = s;
    cell.dataset.t = t;
  }

  let lastTokens = [];
  let ticket = 0;
  // ask the server for the maps of the current state and draw them
  async function refresh() {
    const mine = ++ticket;
    let answer;
    try {
      answer = await api("/api/attention/maps", { run: state.run, text: state.text, layer: state.layer, head: state.head,
        causal: state.causal === null ? null : String(state.causal) });
    } catch (e) {
      if (mine === ticket) error.show(e);
      return;
    }
    if (mine !== ticket) return; // a newer request is on its way
    error.show(null);
    lastTokens = answer.tokens;
    for (const [wrap, max, value] of [[layer, answer.num_layers, answer.layer], [head, answer.num_heads, answer.head]]) {
      wrap.input.max = max;
      wrap.input.value = value;
      wrap.querySelector("output").textContent = String(value);
    }
    mask.input.checked = answer.causal;
    const own = answer.causal === answer.model_causal;
    const what = answer.model_causal
      ? (own ? "causal mask on, as this GPT computes" : "causal mask OFF: the same trained weights, every query seeing every key in every layer \u2014 not what this GPT computes")
      : (own ? "no mask, as this BERT computes" : "causal mask ON: the same trained weights with a mask BERT never had");
    info.textContent = `${answer.family}: ${answer.num_layers} layers \u00d7 ${answer.num_heads} heads, ${answer.tokens.length} tokens (at most ${answer.max_tokens}); ${what}.`;
    info.dataset.tokens = answer.tokens.length;
    maps.replaceChildren(...answer.maps.map((m) => headMap(m, answer.tokens, showCell)));
    cell.textContent = "Click a cell to read its weight.";
    delete cell.dataset.weight;
    delete cell.dataset.s;
    outputsTitle.textContent = answer.family === "bert" ? "Filler of each [MASK]" : "Next token";
    outputs.replaceChildren(el("p", {}, `${answer.outputs_are} (the model's own mask).`), outputTable(answer.outputs, answer.tokens));
  }
  refresh();
}
