#!/usr/bin/env python3
"""Train tandem's bundled tiny DeepSeek-V3-architecture chat model (MLA, MoE, MTP) and export it.

One command on the GPU host: tokenize the corpus, check the whole pipeline on the untrained model
(forward/backward, export, reload, float64 reference against make_fixtures.py, evaluation), train for a
fixed number of steps, export the Hugging Face directory and a float64 reference, print a short table.
See README.md beside this file.
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
import warnings

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # deterministic cuBLAS; before CUDA starts

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np   # noqa: E402
import torch         # noqa: E402
import torch.nn.functional as F   # noqa: E402

import bpe           # noqa: E402
import data as D     # noqa: E402
import evaluate as EV  # noqa: E402
import hfio          # noqa: E402
from model import BASE, Model, config_json, param_counts   # noqa: E402

MAX_FILES = 8                 # what may come back from the GPU host
Q8_LIMIT = 14 * 1024 * 1024   # the bundled Q8_0 GGUF must stay under this


class Log:
    def __init__(self):
        self.lines, self.f = [], None

    def open(self, path):
        self.f = open(path, "w", encoding="utf-8")
        for ln in self.lines:
            self.f.write(ln + "\n")
        self.f.flush()

    def close(self):
        if self.f:
            self.f.close()
            self.f = None

    def __call__(self, *a):
        ln = " ".join(str(x) for x in a)
        print(ln, flush=True)
        self.lines.append(ln)
        if self.f:
            self.f.write(ln + "\n")
            self.f.flush()


log = Log()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", required=True, help="make_corpus.py output, .txt or .gz")
    p.add_argument("--tokenizer", required=True, help="shared/fixtures/tokenizer/tokenizer.json")
    p.add_argument("--reference-impl", default=None, help="shared/fixtures/generators/make_fixtures.py (the "
                   "independent float64 implementation that computes reference.safetensors)")
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=4500, help="optimizer steps (fixed: the run is deterministic)")
    p.add_argument("--batch", type=int, default=128, help="rows per step")
    p.add_argument("--seq", type=int, default=512, help="tokens per row")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--wd", type=float, default=0.1)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--mtp-weight", type=float, default=0.3, help="lambda of the MTP loss (DeepSeek-V3: 0.3, then 0.1)")
    p.add_argument("--mtp-distill", type=float, default=0.5,
                   help="share of the MTP loss taken against the main model's own (detached) next-token "
                        "distribution instead of the data; raises greedy draft acceptance (0 = pure DeepSeek-V3)")
    p.add_argument("--seq-aux-alpha", type=float, default=1e-4, help="complementary sequence-wise balance loss")
    p.add_argument("--bias-gamma", type=float, default=1e-3, help="bias update speed of aux-loss-free balancing")
    p.add_argument("--chat-repeat", type=int, default=2, help="copies of every training gloss turn per epoch: one "
                   "alone, the others grouped into multi-turn conversations")
    p.add_argument("--heldout-per-mille", type=int, default=25, help="glosses held out, by headword")
    p.add_argument("--time-budget", type=float, default=400.0,
                   help="seconds for the training loop; if the measured speed would overrun it, the step count "
                        "(and LR schedule) is cut at step 60 and the run says so (the only nondeterministic path)")
    p.add_argument("--log-every", type=int, default=150)
    p.add_argument("--eval-every", type=int, default=750)
    p.add_argument("--ref-tokens", type=int, default=48, help="reference prompt length T")
    p.add_argument("--ref-gen", type=int, default=16, help="reference greedy continuation length G")
    p.add_argument("--eval-turns", type=int, default=2000, help="held-out chat turns for the final evaluation")
    p.add_argument("--gen-prompts", type=int, default=128, help="held-out questions for generation acceptance")
    p.add_argument("--sample-tokens", type=int, default=48, help="longest greedy answer in the final evaluation")
    p.add_argument("--max-shard-bytes", type=int, default=11_500_000)
    p.add_argument("--device", default="auto", help="auto, cuda or cpu")
    p.add_argument("--cpu-bf16", action="store_true", help="bf16 autocast on the CPU too (tests the GPU's dtype paths)")
    p.add_argument("--python-tokenizer", action="store_true", help="use the pure-Python BPE even if tokenizers exists")
    p.add_argument("--override", default=None,
                   help='JSON object of config.json keys replacing model.py BASE, e.g. \'{"num_hidden_layers": 4}\'')
    p.add_argument("--max-chars", type=int, default=None, help="read only this much of the corpus")
    p.add_argument("--smoke", action="store_true",
                   help="CPU-sized check of the whole pipeline: a slice of the corpus, tiny batches, a few steps")
    a = p.parse_args(argv)
    if a.smoke:
        a.steps, a.batch, a.seq, a.warmup = 4, 2, 64, 2
        a.log_every, a.eval_every = 2, 2
        a.eval_turns, a.gen_prompts, a.ref_tokens, a.ref_gen, a.sample_tokens = 16, 2, 20, 3, 8
        a.max_chars = a.max_chars or 400_000
    return a


def lr_at(step, total, a):
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    t = min(1.0, (step - a.warmup) / max(1, total - a.warmup))
    return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def export_weights(model):
    """Stored dtypes: BF16 everywhere (as the official checkpoint), F32 for the router's correction bias."""
    out = {}
    for k, v in model.hf_state().items():
        out[k] = v if k.endswith("e_score_correction_bias") else v.to(torch.bfloat16)
    return out


def q8_estimate(W):
    """Q8_0 GGUF bytes: 34 bytes per 32 weights for matrices, F32 for vectors, plus ~0.3 MB tokenizer/metadata."""
    n = 0
    for v in W.values():
        n += v.numel() * 34 // 32 if v.dim() >= 2 else v.numel() * 4
    return n + 300_000


def export_dir(model, cfg, out, a):
    W = export_weights(model)
    files = hfio.save_hf_dir(out, W, cfg, a.tokenizer, a.max_shard_bytes)
    cfg2, W2 = hfio.load_hf_dir(out)
    if cfg2 != json.loads(json.dumps(cfg)):
        raise RuntimeError("config.json did not read back equal")
    for k, v in W.items():
        if not torch.equal(v, W2[k]):
            raise RuntimeError(f"{k} did not read back equal")
    return files, cfg2, W2


def compute_loss(model, rows, a, autocast_on, device):
    inp = rows[:, :-1]
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast_on):
        logits, mtp, _ = model(inp)
    V = logits.shape[-1]
    lm = F.cross_entropy(logits.float().reshape(-1, V), rows[:, 1:].reshape(-1))
    mtp_f = mtp.float()
    mce = F.cross_entropy(mtp_f.reshape(-1, V), rows[:, 2:].reshape(-1))
    loss_mtp = mce
    if a.mtp_distill > 0:
        teacher = torch.softmax(logits[:, 1:].detach().float(), -1)
        kd = -(teacher * F.log_softmax(mtp_f, -1)).sum(-1).mean()
        loss_mtp = (1 - a.mtp_distill) * mce + a.mtp_distill * kd
    aux = sum((m.aux_loss for m in model.moes() if m.aux_loss is not None), torch.zeros((), device=device))
    for m in model.moes():
        m.aux_loss = None
    return lm + a.mtp_weight * loss_mtp + aux, lm.detach(), mce.detach()


@torch.no_grad()
def update_bias(model, gamma):
    """DeepSeek-V3's auxiliary-loss-free balancing: raise the bias of underloaded experts, lower overloaded."""
    for m in model.moes():
        m.e_score_correction_bias += gamma * torch.sign(m.load.mean() - m.load)
        m.load_log += m.load
        m.load.zero_()


@torch.no_grad()
def max_violation(model):
    """MaxVio of the loss-free balancing paper: max_e load_e / mean load - 1, worst MoE layer, since last call."""
    v = torch.stack([m.load_log.max() / m.load_log.mean().clamp_min(1e-9) - 1 for m in model.moes()])
    for m in model.moes():
        m.load_log.zero_()
    return float(v.max())


def run_evals(model, tok, units, a, device, quick=False):
    """Everything the final report measures; also run on the untrained model before training (quick)."""
    n_turns = 8 if quick else a.eval_turns
    res = {"chat": EV.chat_eval(model, units.chat_held[:n_turns], units.held_meta[:n_turns], device)}
    rows = D.pack_rows(units.plain_held, a.seq, 2 if quick else 64)
    res["plain"] = EV.plain_eval(model, rows, device)
    n_gen = 2 if quick else a.gen_prompts
    metas = units.held_meta[:n_gen]
    prompts = [EV.chat_prompt(tok, D.MAIN_QUESTION.format(w=m["word"])) for m in metas]
    gens, _ = EV.greedy_generate(model, prompts, 4 if quick else a.sample_tokens, device)
    res["accept_gen"], res["accept_gen_checks"] = EV.gen_acceptance(model, prompts, gens, device)
    words = ["harbor"] + EV.sample_words(units, 2 if (quick or a.smoke) else 7)
    res["samples"], sp, sg = EV.answers(model, tok, words, device, 4 if quick else a.sample_tokens)
    res["accept_samples"], _ = EV.gen_acceptance(model, sp, sg, device)
    for s, w in zip(res["samples"], words):
        s["held_out"] = w.lower() not in units.train_words
    return res


def check_files(out):
    names = sorted(os.listdir(out))
    big = [(n, os.path.getsize(os.path.join(out, n))) for n in names
           if os.path.getsize(os.path.join(out, n)) >= 16 * 1024 * 1024]
    return names, big


def main(argv=None):
    a = parse_args(argv)
    t_start = time.time()
    times = {}
    os.makedirs(a.out, exist_ok=True)
    if os.listdir(a.out):
        raise SystemExit(f"{a.out} is not empty; give a new --out directory (files from the GPU host are limited "
                         f"to {MAX_FILES})")
    log.open(os.path.join(a.out, "train.log"))
    log("train_tiny:", " ".join(sys.argv[1:] if argv is None else argv))
    device = torch.device("cuda" if (a.device == "auto" and torch.cuda.is_available()) else
                          ("cpu" if a.device == "auto" else a.device))
    bf16 = device.type == "cuda" or a.cpu_bf16
    log(f"torch {torch.__version__} device {device}"
        + (f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else "") + f" bf16 autocast {bf16}")
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        # float32 matmuls stay IEEE (PyTorch's default; no TF32), so the fp32 evaluation is exact enough
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    impl = EV.load_impl(a.reference_impl) if a.reference_impl else None
    if impl is None:
        log("WARNING: no --reference-impl: the reference will come from this trainer's own code")

    # ------------------------------------------------------------------ data
    t0 = time.time()
    tok = bpe.Tok(a.tokenizer, force_python=a.python_tokenizer)
    for name, want in D.SPECIALS.items():
        if tok.specials.get(name) != want:
            raise SystemExit(f"{a.tokenizer}: special token {name} has id {tok.specials.get(name)}, expected {want}")
    text = D.read_corpus(a.corpus, a.max_chars)
    units = D.Units(tok, text, a.seed, a.seq, a.heldout_per_mille, a.chat_repeat)
    times["tokenize_s"] = time.time() - t0
    ep_tokens = units.epoch_tokens()
    log(f"tokenizer: {tok.kind}; corpus {len(text) / 1e6:.1f} M chars -> {json.dumps(units.stats)}")
    log(f"one epoch (chat x{a.chat_repeat}) = {ep_tokens / 1e6:.2f} M tokens; training will see "
        f"{a.steps * a.batch * a.seq / 1e6:.1f} M tokens = {a.steps * a.batch * a.seq / ep_tokens:.1f} epochs")
    log("sample turn:", tok.decode(units.chat_train[0]))
    log("sample conversation:", tok.decode(max(units.chat_train[-40:], key=len)))

    # ------------------------------------------------------------------ model
    base = dict(BASE)
    if a.override:
        extra = json.loads(a.override)
        unknown = set(extra) - set(BASE)
        if unknown:
            raise SystemExit(f"--override: unknown keys {sorted(unknown)}; known: {sorted(BASE)}")
        base.update(extra)
    cfg = config_json(base)
    if impl is not None:
        ref_cfg = impl.config_json(base, False)
        if ref_cfg != cfg:
            raise SystemExit("config.json keys/values differ from make_fixtures.config_json: "
                             f"{sorted(set(ref_cfg.items()) ^ set(cfg.items()), key=str)[:6]}")
    model = Model(cfg, a.seq_aux_alpha)
    model.init_weights()
    model.to(device)
    counts = param_counts(model)
    q8 = q8_estimate(export_weights(model))
    log(f"parameters: {counts['unique'] / 1e6:.3f} M unique, {counts['exported'] / 1e6:.3f} M exported (MTP "
        f"copies of embed/head included), {counts['active_per_token'] / 1e6:.3f} M active per token without "
        f"the embedding; Q8_0 GGUF about {q8 / 2**20:.2f} MiB")
    if q8 >= Q8_LIMIT:
        raise SystemExit(f"Q8_0 estimate {q8 / 2**20:.2f} MiB is over 14 MiB: shrink the model in model.py BASE")

    # ------------------------------------------------------------------ preflight: every later step, on the untrained model
    t0 = time.time()
    model.train()
    rows0 = torch.from_numpy(units.epoch_rows(0, a.seed, a.seq)[:a.batch].astype(np.int64)).to(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss, lm, mce = compute_loss(model, rows0, a, bf16, device)
        loss.backward()
    warnings.filterwarnings("once", category=UserWarning)   # a kernel's warning once, not every step
    nondet = sorted({str(w.message).split("\n")[0][:160] for w in caught})
    for s in nondet:
        log("note (PyTorch warning on the first step):", s)
    if not (math.isfinite(float(loss)) and abs(float(lm) - math.log(cfg["vocab_size"])) < 1.0):
        raise SystemExit(f"preflight: first loss {float(lm):.3f} is not near ln(V) = {math.log(cfg['vocab_size']):.3f}")
    model.zero_grad(set_to_none=True)
    for m in model.moes():
        m.load.zero_()
        m.load_log.zero_()
    if device.type == "cuda":
        log(f"preflight forward/backward ok: loss {float(lm):.3f}, peak GPU memory "
            f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    tmp = tempfile.mkdtemp(prefix="train_tiny_preflight_")
    try:
        files, cfg2, W2 = export_dir(model, cfg, tmp, a)
        n_files = len(files) + 3   # + reference.safetensors, results.json, train.log
        if n_files > MAX_FILES:
            raise SystemExit(f"the export would be {n_files} files, more than {MAX_FILES} can come back: "
                             f"raise --max-shard-bytes or shrink the model")
        evq = run_evals(model, tok, units, a, device, quick=True)
        cand = [u for u in units.chat_held if len(u) >= 14][:4]
        ids, _ = EV.pick_prompt(model, cand, 12, 2, device)
        refq = EV.make_reference(os.path.join(tmp, "reference.safetensors"), cfg2, W2, ids, 2, impl, log)
        if impl is not None:
            errs = [refq[k] for k in ("logits_rel_err", "mtp_logits_rel_err", "final_hidden_rel_err",
                                      "greedy_logits_rel_err")]
            if max(errs) > 1e-9 or not refq["topk_same"]:
                raise SystemExit(f"preflight: this model's float64 forward disagrees with make_fixtures.py: {refq}")
        hfio.load_safetensors(os.path.join(tmp, "reference.safetensors"))
        json.dumps(evq)
        log(f"preflight export ok: {[(n, b) for n, b in files]}; reference vs make_fixtures.py: "
            + ", ".join(f"{k} {v:.2e}" for k, v in refq.items() if k.endswith("rel_err")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    model.load_hf_state(W2)   # no-op except bf16 rounding of the starting point; keeps runs identical
    times["preflight_s"] = time.time() - t0
    log(f"preflight passed in {times['preflight_s']:.1f} s")

    # ------------------------------------------------------------------ train
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": a.wd}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.type == "cuda")
    except (TypeError, RuntimeError):
        opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    total = a.steps
    tok_per_step = a.batch * a.seq
    t_train = time.time()
    epoch, pos, rows = 0, 0, None
    sum_lm = torch.zeros((), device=device)
    sum_mce = torch.zeros((), device=device)
    n_sum, t_last, calib_t = 0, time.time(), None
    hist = []
    cut_note = None
    step = 0
    while step < total:
        if rows is None or pos + a.batch > rows.shape[0]:
            if rows is not None:
                epoch += 1
            rows = torch.from_numpy(units.epoch_rows(epoch, a.seed, a.seq).astype(np.int64)).to(device)
            pos = 0
            if rows.shape[0] < a.batch:
                raise SystemExit(f"an epoch has only {rows.shape[0]} rows, fewer than --batch {a.batch}")
        batch = rows[pos:pos + a.batch]
        pos += a.batch
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, a)
        loss, lm, mce = compute_loss(model, batch, a, bf16, device)
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        update_bias(model, a.bias_gamma)
        sum_lm += lm
        sum_mce += mce
        n_sum += 1
        step += 1
        if step == 20 or step == 60:
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step == 20:
                calib_t = time.time()
            else:
                dt = (time.time() - calib_t) / 40
                log(f"speed: {dt * 1000:.1f} ms/step = {tok_per_step / dt / 1e6:.2f} M tokens/s; {total} steps take "
                    f"about {dt * total:.0f} s; --steps {int(390 / dt)} would fill 6.5 minutes")
                if dt * total > a.time_budget:
                    new_total = max(step + 1, int(a.time_budget / dt))
                    cut_note = (f"steps cut from {total} to {new_total} to fit --time-budget {a.time_budget:.0f} s "
                                f"(nondeterministic); rerun with --steps {new_total} to reproduce this run")
                    log("WARNING:", cut_note)
                    total = new_total
        if step % a.log_every == 0 or step == total:
            l1, l2 = float(sum_lm) / n_sum, float(sum_mce) / n_sum
            if not (math.isfinite(l1) and math.isfinite(l2)):
                raise SystemExit(f"step {step}: loss is not finite ({l1}, {l2}); lower --lr")
            el = time.time() - t_train
            now = time.time()
            bias = torch.stack([m.e_score_correction_bias for m in model.moes()])
            log(f"step {step:5d}/{total} ep {epoch} lr {lr_at(step - 1, total, a):.2e} loss {l1:.3f} mtp {l2:.3f} "
                f"| {tok_per_step * n_sum / (now - t_last) / 1e6:.2f} M tok/s | {el:.0f} s | bias |max| "
                f"{float(bias.abs().max()):.3f} maxvio {max_violation(model):.2f}")
            hist.append((step, l1, l2))
            sum_lm.zero_(); sum_mce.zero_()
            n_sum, t_last = 0, now
            if el > a.time_budget * 1.15 and step < total:
                cut_note = f"stopped at step {step} of {total}: over the time budget (nondeterministic)"
                log("WARNING:", cut_note)
                break
        if step % a.eval_every == 0 and step < total:
            ev = EV.chat_eval(model, units.chat_held[:512], units.held_meta[:512], device, bf16=bf16)
            log(f"  held-out chat: loss {ev['loss_main']:.3f} (answer {ev['loss_main_answer']:.3f}) mtp "
                f"{ev['loss_mtp']:.3f} accept(tf) {ev['accept_tf']:.3f}")
    if device.type == "cuda":
        torch.cuda.synchronize()
    times["train_s"] = time.time() - t_train
    steps_done = step
    log(f"trained {steps_done} steps in {times['train_s']:.1f} s "
        f"({steps_done * tok_per_step / max(times['train_s'], 1e-9) / 1e6:.2f} M tokens/s)")

    # ------------------------------------------------------------------ export, reload, evaluate the exported weights
    t0 = time.time()
    files, cfg2, W2 = export_dir(model, cfg, a.out, a)
    model.load_hf_state(W2)
    times["export_s"] = time.time() - t0
    t0 = time.time()
    ev = run_evals(model, tok, units, a, device)
    times["eval_s"] = time.time() - t0
    t0 = time.time()
    cand = [u for u in units.chat_held if len(u) >= a.ref_tokens + 2][:16]
    if not cand:
        cand = sorted(units.chat_held, key=len)[-4:]
    T = min(a.ref_tokens, min(len(c) for c in cand))
    ids, margin_est = EV.pick_prompt(model, cand, T, a.ref_gen, device)
    ref = EV.make_reference(os.path.join(a.out, "reference.safetensors"), cfg2, W2, ids, a.ref_gen, impl, log)
    times["reference_s"] = time.time() - t0
    times["total_s"] = time.time() - t_start
    if impl is not None:
        bad = max(ref[k] for k in ("logits_rel_err", "mtp_logits_rel_err", "greedy_logits_rel_err")) > 1e-9
        if bad or not ref["topk_same"] or not ref["greedy_same"]:
            log("WARNING: this model's float64 forward disagrees with make_fixtures.py; the reference file is "
                "make_fixtures.py's (trust it), but report this:", json.dumps(ref))

    train_tail = hist[-3:]
    results = {
        "command": "train.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "torch": torch.__version__, "device": str(device), "seed": a.seed, "steps": steps_done,
        "planned_steps": a.steps, "step_cut": cut_note, "batch": a.batch, "seq": a.seq,
        "tokens_seen": steps_done * tok_per_step, "epochs": steps_done * tok_per_step / ep_tokens,
        "tokens_per_s": steps_done * tok_per_step / max(times["train_s"], 1e-9),
        "params": counts, "q8_0_estimate_bytes": q8, "data": units.stats,
        "train_loss_main": float(np.mean([h[1] for h in train_tail])),
        "train_loss_mtp": float(np.mean([h[2] for h in train_tail])),
        "heldout_chat": ev["chat"], "heldout_plain": ev["plain"],
        "mtp_accept_heldout_teacher_forced": ev["chat"]["accept_tf"],
        "mtp_accept_heldout_greedy_generation": ev["accept_gen"], "mtp_accept_gen_checks": ev["accept_gen_checks"],
        "mtp_accept_samples": ev["accept_samples"], "samples": ev["samples"], "reference": ref,
        "heldout_rule": f"glosses whose headword has crc32(word.lower()) % 1000 < {a.heldout_per_mille}, except "
                        f"{sorted(D.DEMO_WORDS)}",
        "heldout_questions": [{"question": D.MAIN_QUESTION.format(w=m["word"]), "definition": m["definition"]}
                              for m in units.held_meta[:64]],
        "files": files, "times_s": times,
        "nondeterminism": {"pytorch_warnings_first_step": nondet,
                           "note": "use_deterministic_algorithms(warn_only=True); ops that warned above may "
                                   "differ in the last bits between runs"},
        "hparams": {k: getattr(a, k) for k in ("lr", "min_lr_frac", "warmup", "wd", "clip", "mtp_weight",
                                                "mtp_distill", "seq_aux_alpha", "bias_gamma", "chat_repeat",
                                                "heldout_per_mille")},
        "config": cfg,
    }
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    names, big = check_files(a.out)

    # ------------------------------------------------------------------ table
    c, p = ev["chat"], ev["plain"]
    log("")
    log("=" * 78)
    log(f"tiny DeepSeek-V3 (MLA+MoE+MTP), {counts['exported'] / 1e6:.2f} M params exported "
        f"({counts['unique'] / 1e6:.2f} M unique), Q8_0 ~{q8 / 2**20:.1f} MiB")
    log(f"steps {steps_done} x {tok_per_step} tokens = {results['tokens_seen'] / 1e6:.0f} M "
        f"({results['epochs']:.1f} epochs), {results['tokens_per_s'] / 1e6:.2f} M tok/s"
        + (f"  [{cut_note}]" if cut_note else ""))
    log(f"{'loss (nats/token)':28s} {'main':>8s} {'mtp':>8s}")
    log(f"{'train (last steps)':28s} {results['train_loss_main']:8.3f} {results['train_loss_mtp']:8.3f}")
    log(f"{'held-out chat, all':28s} {c['loss_main']:8.3f} {c['loss_mtp']:8.3f}")
    log(f"{'held-out chat, answers':28s} {c['loss_main_answer']:8.3f} {c['loss_mtp_answer']:8.3f}")
    log(f"{'held-out plain text':28s} {p['loss_main']:8.3f} {p['loss_mtp']:8.3f}")
    log(f"MTP acceptance (greedy draft = greedy main): held-out chat teacher-forced {c['accept_tf']:.3f} "
        f"(answers {c['accept_tf_answer']:.3f}); greedy answers to {len(units.held_meta[:a.gen_prompts])} "
        f"held-out questions {ev['accept_gen']:.3f}")
    log(f"reference: T={ref['T']} G={ref['G']} min margin {ref['min_greedy_margin']:.3f}; "
        + (f"ours vs make_fixtures.py: logits {ref['logits_rel_err']:.1e} mtp {ref['mtp_logits_rel_err']:.1e} "
           f"topk same {ref['topk_same']} greedy same {ref['greedy_same']}" if impl is not None else "own code"))
    log("times: " + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in times.items()))
    for s in ev["samples"]:
        log(f"  Q: {s['question']}{' (held out)' if s['held_out'] else ''}")
        log(f"  A: {s['answer']}{'' if s['ended'] else ' [no end token]'}")
    log(f"out: {a.out}: {len(names)} files {names}")
    if len(names) > MAX_FILES or big:
        log(f"WARNING: {len(names)} files / too big {big}: more than the GPU host can send back")
    log("=" * 78)
    log.close()


if __name__ == "__main__":
    main()
