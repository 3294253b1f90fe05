// Load on loopback: 64 concurrent streaming clients for a bounded time (60 s; 20 s in sanitizer builds;
// TANDEM_SERVE_LOAD_SECONDS overrides) against `tandem serve --parallel 4 --queue 64`. Every answer must
// equal the greedy answer for its prompt: none lost, none mixed with another's. Batched rows may take
// other kernels than a single row, so the prompts are those whose greedy answers have a top-2 logit gap of
// at least 0.05 at every step (checked here first, with tandem generate). Time to first token: p50 and
// p99, written to <build>/serve-load.json. The server must exit 0 on SIGTERM (under ASan: with no leak).
import { startServer, greedy, check, main, percentile, BUILD, SANITIZED } from './util.mjs';
import fs from 'node:fs';
import path from 'node:path';

const CLIENTS = 64, MIN_GAP = 0.05, MAX_TOKENS = 48;
const SECONDS = Number(process.env.TANDEM_SERVE_LOAD_SECONDS || (SANITIZED ? 20 : 60));
const candidates = ['What does "harbor" mean?', 'Define "ocean".', 'What is a "compiler"?', 'What does "lantern" mean?',
                    'Define "river".', 'What does "garden" mean?', 'What is a "mountain"?', 'Define "window".',
                    'What does "bridge" mean?', 'Define "teacher".', 'What is a "kettle"?', 'What does "anchor" mean?'];

async function oneRequest(url, prompt) {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: prompt }], temperature: 0, max_tokens: MAX_TOKENS,
                           stream: true }),
  });
  if (!r.ok) return { error: `HTTP ${r.status}: ${await r.text()}` };
  const decoder = new TextDecoder();
  let buf = '', text = '', ttft = null, done = false;
  for await (const chunk of r.body) {
    buf += decoder.decode(chunk, { stream: true });
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const line = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      if (!line.startsWith('data: ')) continue;
      if (line === 'data: [DONE]') { done = true; continue; }
      const j = JSON.parse(line.slice(6));
      if (j.error) return { error: j.error.message };
      const d = j.choices[0]?.delta?.content;
      if (d) {
        if (ttft === null) ttft = performance.now() - t0;
        text += d;
      }
    }
  }
  return done ? { text, ttft } : { error: 'the stream ended without [DONE]' };
}

await main(async () => {
  const prompts = [], refs = new Map();
  for (const p of candidates) {
    const g = greedy(p, { n: MAX_TOKENS });
    if (g.min_logit_gap >= MIN_GAP) { prompts.push(p); refs.set(p, g.text); }
  }
  check(prompts.length >= 4, `only ${prompts.length} prompts have a top-2 gap >= ${MIN_GAP} at every step`);
  console.log(`${prompts.length} of ${candidates.length} prompts have greedy answers without near-ties (gap >= ${MIN_GAP})`);

  const srv = await startServer(['--parallel', '4', '--queue', '64']);
  const ttfts = [], problems = [];
  let requests = 0, chars = 0;
  const t0 = performance.now(), deadline = t0 + SECONDS * 1000;
  try {
    await Promise.all(Array.from({ length: CLIENTS }, async (_, c) => {
      for (let i = 0; performance.now() < deadline; i++) {
        const p = prompts[(c + i) % prompts.length];
        const r = await oneRequest(srv.url, p);
        requests++;
        if (r.error) { problems.push(`client ${c}: ${r.error}`); continue; }
        if (r.text !== refs.get(p)) problems.push(`client ${c}, "${p}": ${JSON.stringify(r.text)} != ${JSON.stringify(refs.get(p))}`);
        ttfts.push(r.ttft);
        chars += r.text.length;
      }
    }));
    const metrics = await (await fetch(`${srv.url}/metrics`)).text();
    const metric = (n) => Number((metrics.match(new RegExp(`^${n} (\\S+)$`, 'm')) || [])[1]);
    const wall = (performance.now() - t0) / 1000;
    ttfts.sort((a, b) => a - b);
    const result = {
      clients: CLIENTS, seconds: Number(wall.toFixed(1)), requests, wrong_or_lost: problems.length,
      ttft_p50_ms: Number(percentile(ttfts, 0.5).toFixed(1)), ttft_p99_ms: Number(percentile(ttfts, 0.99).toFixed(1)),
      generated_tokens: metric('tandem_generated_tokens_total'),
      decode_tok_s: Number(metric('tandem_decode_tokens_per_second').toFixed(0)),
      rows_per_step: Number((metric('tandem_forward_rows_total') / metric('tandem_forward_steps_total')).toFixed(2)),
      // tokens per decode-only step: the slots whose decode steps ran in one forward call
      tokens_per_decode_step: Number((metric('tandem_decode_tokens_total') / metric('tandem_decode_steps_total')).toFixed(2)),
      sanitized: SANITIZED,
    };
    fs.writeFileSync(path.join(BUILD, 'serve-load.json'), JSON.stringify(result) + '\n');
    console.log(JSON.stringify(result));
    check(problems.length === 0, `${problems.length} of ${requests} answers were lost or wrong; first: ${problems.slice(0, 3).join(' | ')}`);
    check(requests >= CLIENTS, `only ${requests} requests in ${SECONDS} s`);
    check(result.tokens_per_decode_step >= 2, `decode steps were not batched: ${result.tokens_per_decode_step} tokens per step`);
  } finally {
    const code = await srv.stop();
    check(code === 0, `the server exited with ${code}: ${srv.stderr().slice(-2000)}`);
    check(!/Sanitizer/.test(srv.stderr()), `the sanitizers reported: ${srv.stderr().slice(-2000)}`);
  }
});
