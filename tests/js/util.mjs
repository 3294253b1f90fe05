// What the JS tests of `tandem serve` share: the npm packages (tools/setup-serve-tests.sh puts them in
// .deps/serve-tests), starting and stopping a server, and `tandem generate`'s greedy answers to compare with.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

export const TANDEM = process.env.TANDEM;
export const BUILD = process.env.TANDEM_BUILD_DIR;
export const SANITIZED = process.env.TANDEM_SANITIZED === '1';
const DEPS = process.env.TANDEM_SERVE_TESTS_DIR ||
             path.join(process.env.TANDEM_SOURCE_DIR, '.deps', 'serve-tests');
export const need = createRequire(path.join(DEPS, 'package.json'));

// A failed check throws, so that the test's finally stops its server; main() reports it.
export function fail(msg) {
  throw new Error(msg);
}

export function check(cond, msg) {
  if (!cond) fail(msg);
}

export async function main(fn) {
  try {
    await fn();
    console.log('PASS');
  } catch (e) {
    console.error(`FAIL: ${e.message}`);
    process.exitCode = 1;
  }
}

// Starts `tandem serve --port 0 ...args`; resolves once it says it is ready.
export function startServer(args = [], env = {}) {
  const proc = spawn(TANDEM, ['serve', '--port', '0', ...args], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  const exited = new Promise((res) => proc.on('exit', (code, sig) => res(code ?? `signal ${sig}`)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server did not start in 120 s: ${err}`)), 120000);
    const early = (code) => reject(new Error(`the server exited with ${code}: ${err}`));
    proc.on('exit', early);
    proc.stderr.on('data', (d) => {
      err += d;
      const m = err.match(/listening on http:\/\/([^/]+)\//);
      if (m && err.includes('ready:')) {
        clearTimeout(timer);
        proc.removeListener('exit', early);
        const url = `http://${m[1]}`;
        resolve({
          url, proc,
          stderr: () => err,
          exited,
          // SIGTERM drains; resolves with the exit code (or "signal X")
          stop: () => { proc.kill('SIGTERM'); return exited; },
        });
      }
    });
  });
}

// `tandem generate --json` for the same greedy request: {text, tokens, stop, min_logit_gap, ...}.
export function greedy(prompt, { n = 64, template = null, system = null } = {}) {
  const args = ['generate', '--json', '--prompt', prompt, '-n', String(n)];
  if (template) args.push('--template', template);
  if (system) args.push('--system', system);
  const r = spawnSync(TANDEM, args, { encoding: 'utf8' });
  if (r.status !== 0) fail(`tandem generate ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

export function finishReason(stop) {
  return stop === 'max_tokens' || stop === 'context_full' ? 'length' : 'stop';
}

export function percentile(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}
