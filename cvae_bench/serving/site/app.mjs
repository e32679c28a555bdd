// The decoder page: onnxruntime-web (WASM, or WebGPU where the browser offers it) runs decoder.onnx.
// Everything a test needs is on window.cvaeBench (see the README, "The decoder in the browser").
const config = await (await fetch('config.json')).json();
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const errors = [];
const api = { config, errors, info: null, ready: null };
window.cvaeBench = api;

async function pickBackend() {
  const wanted = params.get('ep') || 'auto';
  let gpu = false;
  if (wanted !== 'wasm' && config.webgpu && navigator.gpu) {
    try { gpu = (await navigator.gpu.requestAdapter()) !== null; } catch { gpu = false; }
  }
  if (wanted === 'webgpu' && !gpu) throw new Error('?ep=webgpu asked for, but this browser offers no WebGPU adapter');
  return gpu ? 'webgpu' : 'wasm';
}

const [LATENT, CLASSES] = [config.latent_dim, config.num_classes];
const [H, W] = config.image_shape;
let ort, session;
let chain = Promise.resolve();  // one run at a time: a session is not re-entrant

function run(z, labels, batch) {
  const feeds = {
    z: new ort.Tensor('float32', z, [batch, LATENT]),
    label: new ort.Tensor('float32', labels, [batch, CLASSES]),
  };
  const next = chain.then(() => session.run(feeds)).then((out) => out.x_mean.data);
  chain = next.catch(() => {});
  return next;
}

function onehot(digits) {
  const y = new Float32Array(digits.length * CLASSES);
  digits.forEach((d, i) => { y[i * CLASSES + d] = 1; });
  return y;
}

/** Decode one image per (digit, z) pair; returns a Float32Array of n*H*W. */
async function decode(digits, zs) {
  return run(Float32Array.from(zs.flat()), onehot(digits), digits.length);
}

function drawImages(canvas, images, n, cols, scale) {
  const ctx = canvas.getContext('2d');
  const rows = Math.ceil(n / cols);
  const img = ctx.createImageData(cols * W, rows * H);
  for (let k = 0; k < n; k++) {
    const ox = (k % cols) * W, oy = Math.floor(k / cols) * H;
    for (let i = 0; i < H; i++) for (let j = 0; j < W; j++) {
      const v = Math.round(Math.min(1, Math.max(0, images[k * H * W + i * W + j])) * 255);
      const p = ((oy + i) * cols * W + ox + j) * 4;
      img.data[p] = img.data[p + 1] = img.data[p + 2] = v; img.data[p + 3] = 255;
    }
  }
  if (scale === 1) { ctx.putImageData(img, 0, 0); return; }
  const tmp = new OffscreenCanvas(cols * W, rows * H);
  tmp.getContext('2d').putImageData(img, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(tmp, 0, 0, canvas.width, canvas.height);
}

// -- state and UI ---------------------------------------------------------------------------------------
const state = { digit: 0, z: [0, 0] };
const RANGE = 3, GRID = 15;

function buildDigits() {
  for (let d = 0; d < CLASSES; d++) {
    const b = document.createElement('button');
    b.textContent = String(d); b.setAttribute('role', 'radio'); b.dataset.digit = String(d);
    b.addEventListener('click', () => set(d, state.z[0], state.z[1]));
    $('digits').appendChild(b);
  }
}

async function drawMain() {
  const t0 = performance.now();
  const x = await decode([state.digit], [state.z]);
  $('timing').textContent = `decoded in ${(performance.now() - t0).toFixed(2)} ms`;
  drawImages($('image'), x, 1, 1, 1);
  return x;
}

let planeImage = null;
async function drawPlane(redraw) {
  const c = $('plane'), ctx = c.getContext('2d');
  if (redraw || !planeImage) {
    const zs = [], ds = [];
    for (let i = 0; i < GRID; i++) for (let j = 0; j < GRID; j++) {
      zs.push([-RANGE + (2 * RANGE * (j + 0.5)) / GRID, RANGE - (2 * RANGE * (i + 0.5)) / GRID]);
      ds.push(state.digit);
    }
    drawImages(c, await decode(ds, zs), GRID * GRID, GRID, 0);
    planeImage = ctx.getImageData(0, 0, c.width, c.height);
  } else {
    ctx.putImageData(planeImage, 0, 0);
  }
  const px = ((state.z[0] + RANGE) / (2 * RANGE)) * c.width, py = ((RANGE - state.z[1]) / (2 * RANGE)) * c.height;
  ctx.strokeStyle = '#e33'; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.arc(px, py, 7, 0, 2 * Math.PI); ctx.stroke();
}

function mulberry32(seed) {
  return () => { seed |= 0; seed = (seed + 0x6d2b79f5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
}
function normal(rand) { return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()); }

let priorSeed = 0;
async function drawPrior() {
  const rand = mulberry32(priorSeed++), zs = [], ds = [];
  for (let d = 0; d < CLASSES; d++) for (let k = 0; k < 10; k++) { ds.push(d); zs.push([normal(rand), normal(rand)]); }
  drawImages($('prior'), await decode(ds, zs), ds.length, 10, 0);
}

/** Set the digit and z, update every view; resolves to {x_mean, pixels} of the main image. */
async function set(digit, z0, z1) {
  const redraw = digit !== state.digit || !planeImage;
  state.digit = digit; state.z = [z0, z1];
  document.querySelectorAll('#digits button').forEach((b) => b.setAttribute('aria-checked', String(Number(b.dataset.digit) === digit)));
  $('z0').value = String(z0); $('z1').value = String(z1);
  $('z0v').textContent = z0.toFixed(2); $('z1v').textContent = z1.toFixed(2);
  const x = await drawMain();
  await drawPlane(redraw);
  const px = $('image').getContext('2d').getImageData(0, 0, W, H).data;
  const pixels = Array.from({ length: H * W }, (_, i) => px[i * 4]);
  return { x_mean: Array.from(x), pixels };
}

function wirePlane() {
  const c = $('plane');
  let dragging = false;
  const move = (e) => {
    const r = c.getBoundingClientRect();
    const z0 = -RANGE + (2 * RANGE * (e.clientX - r.left)) / r.width, z1 = RANGE - (2 * RANGE * (e.clientY - r.top)) / r.height;
    set(state.digit, Math.max(-RANGE, Math.min(RANGE, z0)), Math.max(-RANGE, Math.min(RANGE, z1)));
  };
  c.addEventListener('pointerdown', (e) => { dragging = true; c.setPointerCapture(e.pointerId); move(e); });
  c.addEventListener('pointermove', (e) => { if (dragging) move(e); });
  c.addEventListener('pointerup', () => { dragging = false; });
}

// -- the in-page benchmark ------------------------------------------------------------------------------
function percentile(sorted, p) { return sorted[Math.min(sorted.length, Math.max(1, Math.ceil((sorted.length * p) / 100))) - 1]; }

/** Time `calls` decodes at each batch size after `warmup` untimed ones; per-call ms and percentiles. */
async function benchmark({ batches = [1, 256], calls = 200, warmup = 10 } = {}) {
  const results = {};
  for (const b of batches) {
    const rand = mulberry32(b);
    const z = Float32Array.from({ length: b * LATENT }, () => normal(rand));
    const y = onehot(Array.from({ length: b }, (_, i) => i % CLASSES));
    for (let i = 0; i < warmup; i++) await run(z, y, b);
    const times = [];
    for (let i = 0; i < calls; i++) { const t0 = performance.now(); await run(z, y, b); times.push(performance.now() - t0); }
    const sorted = [...times].sort((a, c) => a - c);
    const p50 = percentile(sorted, 50);
    results[b] = { batch: b, calls, warmup, times_ms: times, p50_ms: p50, p90_ms: percentile(sorted, 90),
      p99_ms: percentile(sorted, 99), images_per_s: (b * 1000) / p50 };
  }
  const out = { ...api.info, results };
  api.lastBenchmark = out;
  renderBenchmark(out);
  return out;
}

/** pytest-benchmark-style rounds at one batch size: `warmup` untimed calls, then calls per round calibrated so
 *  that a round lasts `minTimeMs`, then `rounds` timed rounds; the first call is timed apart. */
async function timeRounds({ batch, rounds = 15, minTimeMs = 100, warmup = 10 }) {
  const rand = mulberry32(batch);
  const z = Float32Array.from({ length: batch * LATENT }, () => normal(rand));
  const y = onehot(Array.from({ length: batch }, (_, i) => i % CLASSES));
  let t0 = performance.now();
  await run(z, y, batch);
  const first_ms = performance.now() - t0;
  const w0 = performance.now();
  for (let i = 0; i < warmup; i++) await run(z, y, batch);
  let iterations = 1;
  for (;;) {
    t0 = performance.now();
    for (let i = 0; i < iterations; i++) await run(z, y, batch);
    if (performance.now() - t0 >= minTimeMs || iterations >= 1 << 20) break;
    iterations *= 2;
  }
  const warmup_ms = performance.now() - w0;
  const round_ms = [];
  for (let r = 0; r < rounds; r++) {
    t0 = performance.now();
    for (let i = 0; i < iterations; i++) await run(z, y, batch);
    round_ms.push(performance.now() - t0);
  }
  return { batch, round_ms, iterations, warmup, warmup_ms, first_ms };
}

function renderBenchmark(out) {
  const body = $('bench-table').querySelector('tbody');
  body.innerHTML = '';
  for (const r of Object.values(out.results)) {
    const tr = document.createElement('tr');
    for (const v of [r.batch, r.calls, r.p50_ms.toFixed(3) + ' ms', r.p90_ms.toFixed(3) + ' ms', r.p99_ms.toFixed(3) + ' ms', Math.round(r.images_per_s).toLocaleString()]) {
      const td = document.createElement('td'); td.textContent = String(v); tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  $('bench-note').textContent = `${out.ep}, ${out.threads} thread(s), onnxruntime-web ${out.ortVersion}; ` +
    `p99 from ${Object.values(out.results)[0]?.calls} calls: indicative below 1,000 calls`;
}

// -- start ----------------------------------------------------------------------------------------------
async function start() {
  const ep = await pickBackend();
  ort = await import(ep === 'webgpu' ? './ort/ort.webgpu.min.mjs' : './ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = new URL('./ort/', location.href).href;
  const threads = Number(params.get('threads')) || (self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
  ort.env.wasm.numThreads = threads;
  session = await ort.InferenceSession.create(config.model, { executionProviders: [ep], graphOptimizationLevel: 'all' });
  api.info = { ep, threads, ortVersion: ort.env.versions?.web ?? config.ort_version, crossOriginIsolated: self.crossOriginIsolated };
  buildDigits(); wirePlane();
  $('z0').addEventListener('input', () => set(state.digit, Number($('z0').value), state.z[1]));
  $('z1').addEventListener('input', () => set(state.digit, state.z[0], Number($('z1').value)));
  $('resample').addEventListener('click', drawPrior);
  $('run-bench').addEventListener('click', () => benchmark());
  await set(0, 0, 0);
  await drawPrior();
  $('status').textContent = `${config.model_name}: ${ep.toUpperCase()}, ${threads} thread(s)` +
    (self.crossOriginIsolated ? '' : ' (no COOP/COEP headers: one WASM thread)');
  $('about').textContent = `decoder from ${config.backend || 'unknown backend'}, ${config.precision || 'fp32'}; ` +
    `onnxruntime-web ${api.info.ortVersion}; generated by cvae-bench web`;
}

Object.assign(api, { decode, set, benchmark, timeRounds });
api.ready = start().then(() => true, (e) => { errors.push(String(e)); $('status').textContent = `error: ${e}`; throw e; });
