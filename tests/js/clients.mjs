// The official clients against `tandem serve`: openai (chat, streamed and not, completions, models) and
// ollama (chat, generate, tags). Every answer equals `tandem generate`'s for the same greedy request:
// the same text and the same number of tokens (the server's usage and eval_count).
import { need, startServer, greedy, check, fail, finishReason, main } from './util.mjs';

const { OpenAI } = need('openai');
const { Ollama } = need('ollama');

const prompts = ['What does "harbor" mean?', 'Define "ocean".', 'What is a "compiler"?'];
const N = 48;
await main(async () => {
const srv = await startServer(['--parallel', '2']);
try {
  const openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  const models = await openai.models.list();
  const id = models.data[0].id;
  check(models.data.length === 1 && id, `models: ${JSON.stringify(models.data)}`);

  for (const p of prompts) {
    const ref = greedy(p, { n: N });
    const whole = await openai.chat.completions.create({
      model: id, messages: [{ role: 'user', content: p }], temperature: 0, max_tokens: N });
    const c = whole.choices[0];
    check(c.message.content === ref.text, `chat "${p}": ${JSON.stringify(c.message.content)} != ${JSON.stringify(ref.text)}`);
    check(whole.usage.completion_tokens === ref.tokens.length,
          `chat "${p}": ${whole.usage.completion_tokens} tokens, generate made ${ref.tokens.length}`);
    check(c.finish_reason === finishReason(ref.stop), `chat "${p}": finish ${c.finish_reason}, generate stopped at ${ref.stop}`);

    const stream = await openai.chat.completions.create({
      model: 'default', messages: [{ role: 'user', content: p }], temperature: 0, max_completion_tokens: N,
      stream: true, stream_options: { include_usage: true } });
    let text = '', usage = null, finish = null, chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      if (chunk.usage) usage = chunk.usage;
      const ch = chunk.choices[0];
      if (ch?.delta?.content) text += ch.delta.content;
      if (ch?.finish_reason) finish = ch.finish_reason;
    }
    check(text === ref.text, `streamed chat "${p}": ${JSON.stringify(text)} != ${JSON.stringify(ref.text)}`);
    check(usage && usage.completion_tokens === ref.tokens.length, `streamed chat usage ${JSON.stringify(usage)}`);
    check(usage.prompt_tokens_details.cached_tokens > 0, 'the second identical prompt reused no cached token');
    check(finish === finishReason(ref.stop), `streamed finish ${finish}`);
    console.log(`openai chat "${p}": ${ref.tokens.length} tokens equal, whole and streamed (${chunks} chunks)`);
  }

  // completions: the prompt as plain text after BOS, as generate --template raw
  const raw = 'The quick brown fox';
  const refRaw = greedy(raw, { n: 24, template: 'raw' });
  const comp = await openai.completions.create({ model: id, prompt: raw, max_tokens: 24, temperature: 0 });
  check(comp.choices[0].text === refRaw.text, `completions: ${JSON.stringify(comp.choices[0].text)} != ${JSON.stringify(refRaw.text)}`);
  check(comp.usage.completion_tokens === refRaw.tokens.length, `completions usage ${JSON.stringify(comp.usage)}`);
  let streamed = '';
  for await (const chunk of await openai.completions.create({ model: id, prompt: raw, max_tokens: 24, temperature: 0, stream: true }))
    streamed += chunk.choices[0]?.text ?? '';
  check(streamed === refRaw.text, `streamed completions: ${JSON.stringify(streamed)}`);
  console.log(`openai completions: ${refRaw.tokens.length} tokens equal, whole and streamed`);

  // a second turn extends the first: only the new tokens are prefilled
  const p0 = prompts[0], ref0 = greedy(p0, { n: N });
  await openai.chat.completions.create({ model: id, messages: [{ role: 'user', content: p0 }], temperature: 0, max_tokens: N });
  const turn2 = await openai.chat.completions.create({
    model: id, temperature: 0, max_tokens: 8,
    messages: [{ role: 'user', content: p0 }, { role: 'assistant', content: ref0.text }, { role: 'user', content: prompts[1] }] });
  const cached = turn2.usage.prompt_tokens_details.cached_tokens;
  check(cached >= ref0.prompt_tokens, `second turn: ${cached} cached tokens, the first turn's prompt had ${ref0.prompt_tokens}`);
  console.log(`openai second turn: ${cached} of ${turn2.usage.prompt_tokens} prompt tokens came from the slot's cache`);

  // errors reach the client as its own exception, with the status
  try {
    await openai.chat.completions.create({ model: id, messages: [{ role: 'user', content: 'x' }], logprobs: true });
    fail('logprobs: true was accepted');
  } catch (e) {
    check(e.status === 400 && /logprobs/.test(e.message), `logprobs: ${e.status} ${e.message}`);
  }

  const ollama = new Ollama({ host: srv.url });
  const tags = await ollama.list();
  check(tags.models.some((m) => m.name === id), `ollama tags: ${JSON.stringify(tags)}`);
  for (const p of prompts.slice(0, 2)) {
    const ref = greedy(p, { n: N });
    const r = await ollama.chat({ model: id, messages: [{ role: 'user', content: p }], stream: false,
                                  options: { temperature: 0, num_predict: N } });
    check(r.message.content === ref.text, `ollama chat "${p}": ${JSON.stringify(r.message.content)} != ${JSON.stringify(ref.text)}`);
    check(r.eval_count === ref.tokens.length && r.done, `ollama chat eval_count ${r.eval_count}`);
    let text = '', last = null;
    for await (const part of await ollama.chat({ model: id, messages: [{ role: 'user', content: p }], stream: true,
                                                 options: { temperature: 0, num_predict: N } })) {
      text += part.message.content;
      last = part;
    }
    check(text === ref.text && last.done && last.eval_count === ref.tokens.length, `ollama streamed chat "${p}": ${JSON.stringify(text)}`);
    const g = await ollama.generate({ model: id, prompt: p, stream: false, options: { temperature: 0, num_predict: N } });
    check(g.response === ref.text, `ollama generate "${p}": ${JSON.stringify(g.response)}`);
    let gs = '';
    for await (const part of await ollama.generate({ model: id, prompt: p, stream: true, options: { temperature: 0, num_predict: N } }))
      gs += part.response;
    check(gs === ref.text, `ollama streamed generate "${p}": ${JSON.stringify(gs)}`);
    console.log(`ollama chat and generate "${p}": ${ref.tokens.length} tokens equal, whole and streamed`);
  }
  const show = await ollama.show({ model: id });
  check(show.details.family === 'deepseek2', `ollama show: ${JSON.stringify(show.details)}`);
} finally {
  const code = await srv.stop();
  check(code === 0, `the server exited with ${code} after SIGTERM: ${srv.stderr()}`);
}
});
