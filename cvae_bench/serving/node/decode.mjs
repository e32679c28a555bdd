// onnxruntime-web under Node: decode the same inputs with every model named in a request file.
// Usage: node decode.mjs ORT_WEB_PACKAGE_DIR REQUEST.json  ->  JSON on stdout:
//   {"version": "...", "results": {"<model path>": {"x_mean": [...], "ms": ...} | {"error": "..."}}}
// The request: {"models": [paths], "z": [floats, batch*latent], "label": [floats, batch*classes], "batch": n}.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [pkg, requestPath] = process.argv.slice(2);
if (!pkg || !requestPath) {
  console.error('usage: node decode.mjs ORT_WEB_PACKAGE_DIR REQUEST.json');
  process.exit(2);
}
const ort = await import(pathToFileURL(join(pkg, 'dist', 'ort.node.min.mjs')).href);
ort.env.wasm.numThreads = 1;
const request = JSON.parse(await readFile(requestPath, 'utf8'));
const results = {};
for (const path of request.models) {
  try {
    const session = await ort.InferenceSession.create(new Uint8Array(await readFile(path)), { executionProviders: ['wasm'] });
    const [latent, classes] = [request.z.length / request.batch, request.label.length / request.batch];
    const feeds = {
      z: new ort.Tensor('float32', Float32Array.from(request.z), [request.batch, latent]),
      label: new ort.Tensor('float32', Float32Array.from(request.label), [request.batch, classes]),
    };
    const t0 = performance.now();
    const out = await session.run(feeds);
    results[path] = { x_mean: Array.from(out.x_mean.data), dims: out.x_mean.dims, ms: performance.now() - t0 };
    await session.release();
  } catch (e) {
    results[path] = { error: String(e && e.message ? e.message : e).split('\n')[0] };
  }
}
process.stdout.write(JSON.stringify({ version: ort.env.versions?.web ?? null, results }));
