// The web page in headless Chromium (playwright-core driving Debian's chromium): load it, send a message,
// see the answer stream in, press stop during the next answer, send another. Screenshots go to the build
// directory (serve-page*.png).
import { need, startServer, greedy, check, main, BUILD } from './util.mjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const { chromium } = need('playwright-core');
const CHROMIUM = process.env.TANDEM_CHROMIUM || '/usr/bin/chromium';
const shots = path.join(BUILD, 'serve-page.png');

await main(async () => {
  // 60 ms a step: an answer of the bundled model takes about a second, long enough to watch and to stop
  const srv = await startServer([], { TANDEM_SERVE_TEST_DELAY_MS: '60' });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tandem-chromium-'));
  let browser;
  try {
    // a fresh profile (playwright passes it as --user-data-dir)
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
             '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage();
    const outside = [];
    page.on('request', (r) => { if (!r.url().startsWith(srv.url)) outside.push(r.url()); });
    await page.goto(srv.url + '/');
    await page.waitForFunction(() => document.getElementById('status').textContent === 'ready');

    // one message, answered in more than one piece (greedy, to compare with generate)
    await page.fill('#temp', '0');
    const q = 'What does "harbor" mean?';
    const ref = greedy(q, { n: 512 });
    await page.fill('#input', q);
    await page.press('#input', 'Enter');
    await page.waitForFunction(() => document.querySelector('.assistant .answer')?.textContent.length > 0);
    const partial = await page.textContent('.assistant .answer');
    check(await page.isVisible('#stop'), 'no stop button while answering');
    await page.waitForFunction(() => /done/.test(document.querySelector('.assistant .stats')?.textContent || ''));
    const answer = await page.textContent('.assistant .answer');
    check(answer === ref.text, `the page shows ${JSON.stringify(answer)}, generate says ${JSON.stringify(ref.text)}`);
    check(partial.length < answer.length, `the answer did not stream: first seen ${JSON.stringify(partial)}`);
    const stats = await page.textContent('.assistant .stats');
    check(/tok\/s/.test(stats), `no tok/s shown: ${stats}`);
    await page.screenshot({ path: shots });

    // the next answer is stopped mid-way; the server frees the slot
    await page.fill('#input', 'Define "ocean".');
    await page.press('#input', 'Enter');
    await page.waitForFunction(() => document.querySelectorAll('.assistant .answer')[1]?.textContent.length > 0);
    await page.click('#stop');
    await page.waitForFunction(() => /stopped/.test(document.querySelectorAll('.assistant .stats')[1]?.textContent || ''));
    const stopped = await page.textContent('.assistant:nth-of-type(4) .answer');
    check(await page.isVisible('#send'), 'the send button did not come back after stop');

    // and another message is answered in full
    const q3 = 'What is a "compiler"?';
    await page.fill('#input', q3);
    await page.press('#input', 'Enter');
    await page.waitForFunction(() => /done/.test(document.querySelectorAll('.assistant .stats')[2]?.textContent || ''));
    const third = await page.$$eval('.assistant .answer', (els) => els[2].textContent);
    check(third.length > 0, 'no third answer');
    await page.screenshot({ path: shots.replace('.png', '-stopped.png') });
    const metrics = await (await fetch(srv.url + '/metrics')).text();
    check(/tandem_generations_cancelled_total [1-9]/.test(metrics), 'the stopped answer was not cancelled on the server');
    check(outside.length === 0, `the page reached outside the server: ${outside.join(', ')}`);
    console.log(`page: answer streamed (${partial.length} then ${answer.length} chars), stopped after ${stopped.length} chars, ` +
                `then answered again; screenshots ${shots}`);
  } finally {
    if (browser) await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
    const code = await srv.stop();
    check(code === 0, `the server exited with ${code}`);
  }
});
