// The sampling widget: text from a language-model run, streamed token by token as the server
// generates it (newline-delimited JSON read with fetch + ReadableStream), with temperature,
// top-k, top-p and a seed; Stop aborts the fetch, and the server stops generating.
import { api, choice, el, equation, errorBox, listRuns, slider } from "/static/common.js";

// read a newline-delimited JSON stream, calling onLine(object) for each line
async function readLines(response, onLine) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (line.trim()) onLine(JSON.parse(line));
    }
  }
  if (buffer.trim()) onLine(JSON.parse(buffer));
}

// mount the widget in `root`; params: ?run=NAME&prompt=...&length=&temperature=&top_k=&top_p=&seed=
export async function mount(root, params) {
  const error = errorBox();
  const controls = el("div", { class: "controls" });
  const prompt = el("textarea", { id: "sampling-prompt", rows: 2, cols: 60, maxlength: 500 });
  const start = el("button", { id: "sampling-start", type: "button" }, "Generate");
  const stop = el("button", { id: "sampling-stop", type: "button", disabled: "" }, "Stop");
  const shownPrompt = el("span", { class: "prompt", style: "color:#777" });
  const generated = el("span", { id: "sampling-text" });
  const output = el("pre", { id: "sampling-output", class: "panel", style: "white-space:pre-wrap;min-height:6em" }, shownPrompt, generated);
  const status = el("p", { id: "sampling-status" }, "Press Generate.");
  root.append(
    el("p", {}, "The next token is drawn from the softmax of the logits z at temperature \u03c4 (\u03c4 = 0: the most likely token), kept to the top-k tokens and then to the smallest set whose probability reaches p, and fed back in:"),
    equation("p_i = \\dfrac{\\exp(z_i / \\tau)}{\\sum_j \\exp(z_j / \\tau)}"),
    controls, el("div", { class: "controls" }, el("label", {}, "prompt", prompt), start, stop), error, status, output);

  const listing = await listRuns("/api/sampling/runs", error);
  if (!listing) return;
  const names = listing.runs.map((r) => r.name);
  const num = (key, fallback) => (params.has(key) ? Number(params.get(key)) : fallback);
  const state = {
    run: names.includes(params.get("run")) ? params.get("run") : names[0],
    length: num("length", 200), temperature: num("temperature", 0.8),
    top_k: num("top_k", 0), top_p: num("top_p", 1), seed: num("seed", 0),
  };
  const runChoice = choice("run", listing.runs.map((r) => [r.name, `${r.name} (${r.family})`]), { value: state.run, id: "sampling-run" },
    (v) => { state.run = v; loadRun(false); });
  const length = slider("new tokens", { min: 1, max: listing.max_length, value: state.length, id: "sampling-length" }, (v) => { state.length = v; });
  const temperature = slider("temperature \u03c4", { min: 0, max: 2, step: 0.05, value: state.temperature, id: "sampling-temperature" }, (v) => { state.temperature = v; });
  const topK = slider("top-k (0 = off)", { min: 0, max: 1000, value: state.top_k, id: "sampling-top-k" }, (v) => { state.top_k = v; });
  const topP = slider("top-p (1 = off)", { min: 0.05, max: 1, step: 0.05, value: state.top_p, id: "sampling-top-p" }, (v) => { state.top_p = v; });
  const seed = el("input", { type: "number", id: "sampling-seed", min: 0, max: 2147483647, step: 1, value: state.seed, style: "width:7em" });
  seed.addEventListener("input", () => { state.seed = Number(seed.value); });
  controls.append(runChoice, length, temperature, topK, topP, el("label", {}, "seed", seed));

  // read the run's vocabulary size (the range of top-k) and its default prompt
  async function loadRun(first) {
    try {
      const info = await api("/api/sampling/info", { run: state.run });
      topK.input.max = info.vocab_size;
      if (state.top_k > info.vocab_size) { state.top_k = info.vocab_size; topK.input.value = state.top_k; topK.querySelector("output").textContent = String(state.top_k); }
      if (first && params.has("prompt")) prompt.value = params.get("prompt");
      else if (!prompt.value) prompt.value = info.default_prompt;
      error.show(null);
    } catch (e) {
      error.show(e);
    }
  }

  let controller = null;
  // start a generation: stream its pieces into the output until it ends or Stop is pressed
  async function generate() {
    if (controller) controller.abort();
    const mine = new AbortController();
    controller = mine;
    error.show(null);
    shownPrompt.textContent = prompt.value;
    generated.textContent = "";
    status.textContent = "streaming\u2026";
    status.dataset.state = "streaming";
    start.disabled = true;
    stop.disabled = false;
    const query = new URLSearchParams({ run: state.run, prompt: prompt.value, length: state.length,
      temperature: state.temperature, seed: state.seed });
    if (state.top_k > 0) query.set("top_k", state.top_k);
    if (state.top_p < 1) query.set("top_p", state.top_p);
    const began = performance.now();
    try {
      const response = await fetch(`/api/sampling/stream?${query}`, { signal: mine.signal });
      if (!response.ok) {
        const answer = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
        throw new Error(answer.error);
      }
      await readLines(response, (msg) => {
        if (msg.type === "text") {
          generated.textContent += msg.text;
          status.textContent = `streaming\u2026 ${generated.textContent.length} characters`;
        } else if (msg.type === "end") {
          status.textContent = `done: ${msg.text.length} characters in ${((performance.now() - began) / 1000).toFixed(2)} s (seed ${state.seed})`;
          status.dataset.state = "done";
        } else if (msg.type === "error") {
          throw new Error(msg.error);
        }
      });
    } catch (e) {
      if (e.name === "AbortError") {
        status.textContent = `stopped after ${generated.textContent.length} characters`;
        status.dataset.state = "stopped";
      } else {
        error.show(e);
        status.textContent = "failed";
        status.dataset.state = "failed";
      }
    } finally {
      if (controller === mine) {
        controller = null;
        start.disabled = false;
        stop.disabled = true;
      }
    }
  }

  start.addEventListener("click", generate);
  stop.addEventListener("click", () => { if (controller) controller.abort(); });
  await loadRun(true);
}
