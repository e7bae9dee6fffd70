// The generative models widget: for a diffusion run, scrub through the DDPM/DDIM trajectory
// x_T ... x_0; for a VAE run, click a 2-D plane of the latent space and see the decoded image;
// for a GAN (or a VAE), samples from a fixed noise seed. Images come from the server as
// numbers in [0, 1] (C, H, W) and are drawn on canvases, ink dark as in seqlab's plots.
import { api, el, errorBox, slider, choice, equation, debounce } from "/static/common.js";

const LABEL_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf"];

// draw one image (C, H, W) at (x0, y0), each pixel a `scale` x `scale` square: one channel
// is grey (1 = black ink), three are RGB
function drawImage(ctx, image, x0, y0, scale) {
  const [C, H, W] = [image.length, image[0].length, image[0][0].length];
  for (let r = 0; r < H; r++) {
    for (let c = 0; c < W; c++) {
      const v = (k) => image[k][r][c];
      const [R, G, B] = C === 3 ? [v(0), v(1), v(2)].map((x) => Math.round(255 * x))
        : Array(3).fill(Math.round(255 * (1 - v(0))));
      ctx.fillStyle = `rgb(${R},${G},${B})`;
      ctx.fillRect(x0 + c * scale, y0 + r * scale, scale, scale);
    }
  }
}

// a canvas with `images` side by side (`cols` per row), `gap` pixels apart
function imageRow(images, { id, scale = 8, cols = images.length, gap = 4 } = {}) {
  const [H, W] = [images[0][0].length, images[0][0][0].length];
  const rows = Math.ceil(images.length / cols);
  const canvas = el("canvas", { width: cols * (W * scale + gap), height: rows * (H * scale + gap) });
  if (id) canvas.id = id;
  canvas.dataset.scale = scale;
  canvas.dataset.gap = gap;
  canvas.dataset.cols = cols;
  const ctx = canvas.getContext("2d");
  images.forEach((img, k) => drawImage(ctx, img, (k % cols) * (W * scale + gap), Math.floor(k / cols) * (H * scale + gap), scale));
  return canvas;
}

// a number input
function numberInput(label, { id, value, min, max }, onChange) {
  const input = el("input", { type: "number", id, value, min, max, style: "width:6em" });
  input.addEventListener("change", () => onChange(Math.max(min, Math.min(max, Math.floor(Number(input.value) || 0)))));
  const wrap = el("label", {}, label, input);
  wrap.input = input;
  return wrap;
}

// diffusion: one request gives the kept steps of the trajectory; the slider scrubs them
function diffusionView(box, run, error) {
  const T = run.timesteps;
  const s = { method: "ddim", steps: Math.min(20, T), eta: 0, seed: 0, n: 4, frames: null };
  const frameBox = el("div", {});
  const strip = el("div", {});
  const tLabel = el("span", { class: "number", id: "gen-t" }, "–");
  const scrub = slider("step ", { min: 0, max: 1, value: 0, id: "gen-frame" }, (k) => showFrame(k));
  const stepsSlider = slider("DDIM steps ", { min: 2, max: T, value: s.steps, id: "gen-steps" },
    (v) => { s.steps = v; load(); });

  // show kept step k of every sample
  function showFrame(k) {
    if (!s.frames) return;
    const r = s.frames;
    tLabel.textContent = `t = ${r.timesteps[k]}`;
    frameBox.replaceChildren(imageRow(r.frames[k], { id: "gen-frame-images", scale: 10 }));
  }

  // one request: the whole trajectory of n samples
  const load = debounce(async () => {
    error.show(null);
    try {
      const r = await api("/api/generative/diffusion", { run: run.name, method: s.method,
        steps: s.method === "ddim" ? s.steps : null, eta: s.eta, seed: s.seed, n: s.n, snapshots: 21 });
      s.frames = r;
      scrub.input.max = r.timesteps.length - 1;
      const k = Math.min(Number(scrub.input.value), r.timesteps.length - 1);
      scrub.querySelector("output").textContent = String(k);
      strip.replaceChildren(el("div", {}, `sample 1 at the ${r.timesteps.length} kept steps: `,
        r.timesteps.map((t) => `t=${t}`).join(" ")), imageRow(r.frames.map((f) => f[0]), { id: "gen-strip", scale: 4 }));
      box.querySelector("#gen-visited").textContent = `${r.steps} denoising steps of T = ${r.T}`;
      showFrame(k);
    } catch (e) { error.show(e); }
  }, 150);

  // the DDIM-only controls show with DDIM only
  const ddimOnly = (v) => { for (const c of [stepsSlider, etaSlider]) c.style.display = v === "ddim" ? "" : "none"; };
  const method = choice("sampler ", [["ddim", "DDIM"], ["ddpm", "DDPM (every timestep)"]],
    { value: s.method, id: "gen-method" }, (v) => { s.method = v; ddimOnly(v); load(); });
  const etaSlider = slider("eta ", { min: 0, max: 1, step: 0.1, value: 0, id: "gen-eta" },
    (v) => { s.eta = v; load(); });
  const DDPM_TEX = String.raw`x_{t-1} = \frac{1}{\sqrt{\alpha_t}}\left(x_t - \frac{\beta_t}{\sqrt{1-\bar{\alpha}_t}}` +
    String.raw`\,\epsilon_\theta(x_t, t)\right) + \sigma_t z`;
  const DDIM_TEX = String.raw`x_s = \sqrt{\bar{\alpha}_s}\,\hat{x}_0 + \sqrt{1-\bar{\alpha}_s-\sigma^2}\,` +
    String.raw`\epsilon_\theta(x_t, t) + \sigma z,\quad \hat{x}_0 = ` +
    String.raw`\frac{x_t - \sqrt{1-\bar{\alpha}_t}\,\epsilon_\theta(x_t, t)}{\sqrt{\bar{\alpha}_t}}`;
  box.append(
    equation(DDPM_TEX),
    equation(DDIM_TEX),
    el("p", {}, "DDPM (first line) steps through all T timesteps, adding noise; DDIM (second) visits fewer, " +
      "deterministic when eta = 0. Images are clamped to [0, 1] for display; x_T is pure noise."),
    el("div", { class: "controls" }, method, stepsSlider, etaSlider,
      numberInput("seed ", { id: "gen-seed", value: 0, min: 0, max: 2147483647 }, (v) => { s.seed = v; load(); }),
      slider("samples ", { min: 1, max: 8, value: s.n, id: "gen-n" }, (v) => { s.n = v; load(); })),
    el("p", { id: "gen-visited" }),
    el("div", { class: "controls" }, scrub, tLabel),
    el("div", { class: "panel" }, frameBox), el("div", { class: "panel" }, strip));
  load();
}

// VAE: the plane z = u e_i + v e_j (other coordinates 0) decoded on a grid; a click decodes
// the clicked point; dots are test images' posterior means (coordinates i and j)
function vaeView(box, run, error) {
  const L = run.latent_size;
  const s = { i: 0, j: Math.min(1, L - 1), n: 11, span: 3, map: null, clicked: null };
  const mapBox = el("div", { style: "position:relative; display:inline-block" });
  const decoded = el("div", { id: "gen-decoded-box" });
  const zText = el("p", { id: "gen-z" });
  const planeText = el("p", { id: "gen-plane" });
  const CELL = 40;

  // the map: the decoded grid as a mosaic, the means as dots, clickable
  function drawMap(m) {
    const size = m.n * CELL;
    const scale = CELL / m.grid[0][0].length;
    const canvas = imageRow(m.grid, { id: "gen-map", scale, cols: m.n, gap: 0 });
    canvas.style.cursor = "crosshair";
    const ctx = canvas.getContext("2d");
    // grid cell centres are at u = values[c], v = values[n-1-r]; the point (u, v) sits at
    // x = (u + span) / (2 span) (size - CELL) + CELL/2
    const toX = (u) => ((u + m.span) / (2 * m.span)) * (size - CELL) + CELL / 2;
    const toY = (v) => ((m.span - v) / (2 * m.span)) * (size - CELL) + CELL / 2;
    m.means.forEach(([u, v], k) => {
      if (Math.abs(u) > m.span || Math.abs(v) > m.span) return;
      ctx.fillStyle = LABEL_COLOURS[m.labels[k] % 10];
      ctx.beginPath(); ctx.arc(toX(u), toY(v), 2.5, 0, 2 * Math.PI); ctx.fill();
    });
    ctx.strokeStyle = "rgba(255,255,255,0.8)";  // the cell borders: each cell is one decoded z
    for (let k = 1; k < m.n; k++) {
      ctx.beginPath(); ctx.moveTo(k * CELL + 0.5, 0); ctx.lineTo(k * CELL + 0.5, size); ctx.stroke();
      ctx.beginPath(); ctx.moveTo(0, k * CELL + 0.5); ctx.lineTo(size, k * CELL + 0.5); ctx.stroke();
    }
    if (s.clicked) {  // the decoded point
      ctx.strokeStyle = "#e00"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(toX(s.clicked[0]), toY(s.clicked[1]), 6, 0, 2 * Math.PI); ctx.stroke();
    }
    canvas.addEventListener("click", (e) => {
      const rect = canvas.getBoundingClientRect();
      const x = (e.clientX - rect.left) * (canvas.width / rect.width), y = (e.clientY - rect.top) * (canvas.height / rect.height);
      const u = ((x - CELL / 2) / (size - CELL)) * 2 * m.span - m.span;
      const v = m.span - ((y - CELL / 2) / (size - CELL)) * 2 * m.span;
      decode(Math.max(-m.span, Math.min(m.span, u)), Math.max(-m.span, Math.min(m.span, v)));
    });
    mapBox.replaceChildren(canvas);
    planeText.textContent = L > 2
      ? `The latent space has L = ${L} dimensions: this map is the plane z = u e_${m.i} + v e_${m.j} through the ` +
        `prior's mean (the other ${L - 2} coordinates are 0), u left to right, v bottom to top, in [-${m.span}, ${m.span}]. ` +
        `Dots: posterior means mu(x) of ${m.means.length} test images (colour = digit), coordinates ${m.i} and ${m.j} only.`
      : `The whole latent space (L = 2): z = (u, v), u left to right, v bottom to top, in [-${m.span}, ${m.span}]. ` +
        `Dots: posterior means mu(x) of ${m.means.length} test images (colour = digit).`;
  }

  const loadMap = debounce(async () => {
    error.show(null);
    try {
      s.map = await api("/api/generative/vae/map", { run: run.name, i: s.i, j: s.j, n: s.n, span: s.span, points: 300 });
      drawMap(s.map);
    } catch (e) { error.show(e); }
  }, 150);

  // decode the point (u, v) of the plane
  async function decode(u, v) {
    error.show(null);
    try {
      const r = await api("/api/generative/vae/decode", { run: run.name, i: s.i, j: s.j, u: u.toFixed(4), v: v.toFixed(4) });
      decoded.replaceChildren(imageRow([r.image], { id: "gen-decoded", scale: 24 }));
      zText.textContent = `z = (${r.z.map((x) => x.toFixed(2)).join(", ")})`;
      zText.dataset.u = u.toFixed(4);
      zText.dataset.v = v.toFixed(4);
      s.clicked = [u, v];
      if (s.map) drawMap(s.map);
    } catch (e) { error.show(e); }
  }

  const coords = [...Array(L).keys()].map(String);
  box.append(
    equation(String.raw`p(x \mid z) = \prod_{d}\ \mathrm{Bernoulli}(x_d;\ \mathrm{sigmoid}(f_d(z))),\quad z = u\,e_i + v\,e_j`),
    el("div", { class: "controls" },
      choice("u: coordinate i ", coords, { value: "0", id: "gen-i" }, (v) => { s.i = Number(v); loadMap(); }),
      choice("v: coordinate j ", coords, { value: String(s.j), id: "gen-j" }, (v) => { s.j = Number(v); loadMap(); }),
      slider("span ", { min: 1, max: 6, step: 0.5, value: s.span, id: "gen-span" }, (v) => { s.span = v; loadMap(); })),
    planeText,
    el("div", { style: "display:flex; gap:1.5em; align-items:flex-start; flex-wrap:wrap" },
      el("div", { class: "panel" }, mapBox),
      el("div", { class: "panel" }, el("div", {}, "decoded mean sigmoid(f(z)) of the clicked z"), decoded, zText)));
  loadMap();
  decode(0, 0);
}

// GAN or VAE samples: model.sample(n, generator seeded with `seed`)
function samplesView(box, run, error) {
  const s = { seed: 0, n: 16 };
  const out = el("div", {});
  const load = debounce(async () => {
    error.show(null);
    try {
      const r = await api("/api/generative/samples", { run: run.name, seed: s.seed, n: s.n });
      out.replaceChildren(imageRow(r.images, { id: "gen-samples", scale: 8, cols: 8 }),
        el("p", { id: "gen-samples-info" }, `${r.images.length} samples, seed ${r.seed}`));
    } catch (e) { error.show(e); }
  }, 150);
  box.append(
    run.family === "gan"
      ? equation(String.raw`x = G(z;\ w^{(G)}),\quad z \sim \mathcal{N}(0, I)`)
      : equation(String.raw`x \sim p(x \mid z),\quad z \sim \mathcal{N}(0, I)`),
    el("p", {}, "The noise z is drawn from a generator seeded with the seed: the same seed gives the same images " +
      "(as `seqlab sample RUN --seed S`)."),
    el("div", { class: "controls" },
      numberInput("seed ", { id: "gen-sample-seed", value: 0, min: 0, max: 2147483647 }, (v) => { s.seed = v; load(); }),
      slider("samples ", { min: 1, max: 16, value: s.n, id: "gen-sample-n" }, (v) => { s.n = v; load(); })),
    el("div", { class: "panel" }, out));
  load();
}

// mount the widget: a run choice (?run=NAME), then the view of its family
export async function mount(root, params) {
  const error = errorBox();
  const view = el("div", {});
  root.append(error);
  let runs;
  try { runs = (await api("/api/generative/runs")).runs; } catch (e) { error.show(e); return; }
  if (!runs.length) { root.append(el("p", {}, "No diffusion, VAE or GAN run under RUNS_DIR (seqlab train diffusion|vae|gan).")); return; }

  // show run `name`: its family's view
  function show(name) {
    const run = runs.find((r) => r.name === name) || runs[0];
    history.replaceState(null, "", `?run=${encodeURIComponent(run.name)}`);
    view.replaceChildren(el("p", { id: "gen-family" }, `${run.name}: ${run.family}`));
    error.show(null);
    if (run.family === "diffusion") diffusionView(view, run, error);
    else if (run.family === "vae") {
      vaeView(view, run, error);
      view.append(el("h3", {}, "Samples from the prior"));
      samplesView(view, run, error);
    } else samplesView(view, run, error);
  }

  const wanted = params.get("run") || runs[0].name;
  root.append(el("div", { class: "controls" },
    choice("run ", runs.map((r) => [r.name, `${r.name} (${r.family})`]), { value: wanted, id: "gen-run" }, show)), view);
  show(wanted);
}
