"""Held-out losses, MTP acceptance (greedy draft vs greedy main), greedy samples, and the float64
reference file in the fixtures' format."""
import importlib.util
import math
import zlib

import numpy as np
import torch
import torch.nn.functional as F

import data as D
import hfio
from model import Model, F64


def _autocast(device, enabled):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


@torch.no_grad()
def chat_eval(model, units, metas, device, batch=128, bf16=False):
    """Per held-out chat turn, each alone from position 0 (as at inference). Losses are per token (nats);
    'answer' counts only targets inside the assistant's answer (and its end token). Acceptance: the MTP
    draft at i (for token i+2) equals the main model's argmax at i+1."""
    was = model.training
    model.eval()
    acc = {k: 0.0 for k in ("ce", "n", "ce_ans", "n_ans", "mce", "mn", "mce_ans", "mn_ans", "ok", "chk", "ok_ans",
                             "chk_ans")}
    for s in range(0, len(units), batch):
        ids_np, lens = D.pad_batch(units[s:s + batch])
        P = torch.tensor([m["prompt_len"] for m in metas[s:s + batch]], device=device)[:, None]
        ids = torch.from_numpy(ids_np).to(device)
        n = torch.from_numpy(lens).to(device)[:, None]
        with _autocast(device, bf16):
            logits, mtp, _ = model(ids)
        logits, mtp = logits.float(), mtp.float()
        T = ids.shape[1]
        pos = torch.arange(T, device=device)[None, :]
        # main: position i predicts ids[i+1], valid i <= n-2
        ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                             reduction="none").view(ids.shape[0], T - 1)
        vm = pos[:, :-1] <= n - 2
        am = vm & (pos[:, :-1] + 1 >= P)
        # mtp: row i predicts ids[i+2], valid i <= n-3
        mce = F.cross_entropy(mtp[:, :-1].reshape(-1, mtp.shape[-1]), ids[:, 2:].reshape(-1),
                              reduction="none").view(ids.shape[0], T - 2)
        vt = pos[:, :-2] <= n - 3
        at = vt & (pos[:, :-2] + 2 >= P)
        ok = mtp[:, :-1].argmax(-1) == logits[:, 1:-1].argmax(-1)
        acc["ce"] += float((ce * vm).sum()); acc["n"] += float(vm.sum())
        acc["ce_ans"] += float((ce * am).sum()); acc["n_ans"] += float(am.sum())
        acc["mce"] += float((mce * vt).sum()); acc["mn"] += float(vt.sum())
        acc["mce_ans"] += float((mce * at).sum()); acc["mn_ans"] += float(at.sum())
        acc["ok"] += float((ok & vt).sum()); acc["chk"] += float(vt.sum())
        acc["ok_ans"] += float((ok & at).sum()); acc["chk_ans"] += float(at.sum())
    model.train(was)
    d = lambda a, b: acc[a] / max(acc[b], 1.0)
    return {"loss_main": d("ce", "n"), "loss_main_answer": d("ce_ans", "n_ans"), "loss_mtp": d("mce", "mn"),
            "loss_mtp_answer": d("mce_ans", "mn_ans"), "accept_tf": d("ok", "chk"),
            "accept_tf_answer": d("ok_ans", "chk_ans"), "turns": len(units)}


@torch.no_grad()
def plain_eval(model, rows, device, batch=32, bf16=False):
    was = model.training
    model.eval()
    ce = mce = n = mn = 0.0
    for s in range(0, len(rows), batch):
        r = torch.from_numpy(rows[s:s + batch].astype(np.int64)).to(device)
        inp = r[:, :-1]
        with _autocast(device, bf16):
            logits, mtp, _ = model(inp)
        ce += float(F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), r[:, 1:].reshape(-1),
                                    reduction="sum"))
        mce += float(F.cross_entropy(mtp.float().reshape(-1, mtp.shape[-1]), r[:, 2:].reshape(-1), reduction="sum"))
        n += r[:, 1:].numel()
        mn += r[:, 2:].numel()
    model.train(was)
    return {"loss_main": ce / max(n, 1), "loss_mtp": mce / max(mn, 1), "tokens": int(n)}


@torch.no_grad()
def greedy_generate(model, prompts, max_new, device, stop=D.EOS):
    """Batched greedy decoding with right padding (causal attention makes padding invisible).
    Returns (generated ids per prompt, ending with EOS when reached; smallest top-1 margin per prompt)."""
    was = model.training
    model.eval()
    B = len(prompts)
    lens = [len(p) for p in prompts]
    buf = torch.full((B, max(lens) + max_new), D.EOS, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        buf[i, :len(p)] = torch.tensor(p, dtype=torch.long)
    cur = torch.tensor(lens, device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    gens = [[] for _ in range(B)]
    margins = [math.inf] * B
    for _ in range(max_new):
        T = int(cur.max())
        logits, _, _ = model(buf[:, :T], with_mtp=False)
        last = logits.float()[torch.arange(B, device=device), cur - 1]
        top2 = last.topk(2, dim=-1)[0]
        nxt = last.argmax(-1)
        buf[torch.arange(B, device=device), cur] = torch.where(done, buf[torch.arange(B, device=device), cur], nxt)
        nxt_l, gap_l, done_l = nxt.tolist(), (top2[:, 0] - top2[:, 1]).tolist(), done.tolist()
        for i in range(B):
            if not done_l[i]:
                gens[i].append(nxt_l[i])
                margins[i] = min(margins[i], gap_l[i])
        if stop is not None:
            done = done | (nxt == stop)
        cur = torch.where(done, cur, cur + 1)
        if bool(done.all()):
            break
    model.train(was)
    return gens, margins


@torch.no_grad()
def gen_acceptance(model, prompts, gens, device):
    """Speculation as the engine does it, depth 1: after the main model emits token t+1, the MTP block drafts
    t+2 from (h_t, emb(t+1)); the draft is accepted when it equals the main model's greedy token."""
    was = model.training
    model.eval()
    seqs = [list(p) + list(g) for p, g in zip(prompts, gens)]
    ids_np, lens = D.pad_batch([np.array(s) for s in seqs])
    ids = torch.from_numpy(ids_np).to(device)
    logits, mtp, _ = model(ids)
    main = logits.float().argmax(-1).cpu()
    draft = mtp.float().argmax(-1).cpu()
    ok = chk = 0
    for b, (p, g) in enumerate(zip(prompts, gens)):
        P, n = len(p), len(g)
        for i in range(P - 1, P + n - 2):
            chk += 1
            ok += int(draft[b, i] == main[b, i + 1])
    model.train(was)
    return ok / max(chk, 1), chk


def sample_words(units, count):
    """Held-out single words, chosen deterministically (crc32 order), for sample answers."""
    seen, out = set(), []
    metas = sorted(units.held_meta, key=lambda m: zlib.crc32(m["word"].encode()))
    for m in metas:
        w = m["word"]
        if w.islower() and w.isalpha() and 4 <= len(w) <= 10 and w not in seen:
            seen.add(w)
            out.append(w)
        if len(out) == count:
            break
    return out


def chat_prompt(tok, question):
    return [D.BOS, D.USER] + tok.encode_batch([question])[0] + [D.ASSISTANT]


def answers(model, tok, words, device, max_new=48):
    qs = [D.MAIN_QUESTION.format(w=w) for w in words]
    prompts = [chat_prompt(tok, q) for q in qs]
    gens, _ = greedy_generate(model, prompts, max_new, device)
    out = []
    for q, g in zip(qs, gens):
        ended = bool(g) and g[-1] == D.EOS
        out.append({"question": q, "answer": tok.decode(g[:-1] if ended else g), "ended": ended})
    return out, prompts, gens


# ------------------------------------------------------------------------------------ reference
def load_impl(path):
    spec = importlib.util.spec_from_file_location("make_fixtures_ref", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for name in ("forward", "mtp_forward", "config_json"):
        if not hasattr(mod, name):
            raise RuntimeError(f"{path}: no function {name}; is this shared/fixtures/generators/make_fixtures.py?")
    return mod


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def pick_prompt(model, candidates, T, G, device):
    """The candidate whose greedy continuation has the largest smallest top-1 margin (fp32 estimate), so
    that the reference's greedy tokens are robust to kernel rounding."""
    prompts = [list(c[:T]) for c in candidates]
    _, margins = greedy_generate(model, prompts, G, device, stop=None)
    best = int(np.argmax(margins))
    return prompts[best], margins[best]


def make_reference(path, cfg, W_stored, ids, G, impl, log):
    """Float64 reference on the CPU from the exported weights. With impl (make_fixtures.py) the numbers come
    from that independent implementation and ours is checked against it; without, from ours."""
    W = {k: v.to(F64) for k, v in W_stored.items()}
    m64 = Model(cfg).to(F64)
    m64.load_hf_state(W)
    m64.eval()
    ids_t = torch.tensor(ids, dtype=torch.long)
    own_logits, own_mtp, own_h, own_hid, own_topk = m64.trace(ids_t)
    checks = {}
    if impl is not None:
        rec, hid = [], []
        logits, h = impl.forward(W, cfg, ids_t, rec, hid)
        mtp = impl.mtp_forward(W, cfg, ids_t, h)
        moe_layers = [l for l in range(cfg["num_hidden_layers"]) if l >= cfg["first_k_dense_replace"]]
        topk = dict(zip(moe_layers, rec))
        seq = ids_t.clone()
        gen, gen_logits, margins = [], [], []
        for _ in range(G):
            lg, _ = impl.forward(W, cfg, seq)
            last = lg[-1]
            top2 = last.topk(2)[0]
            nxt = int(last.argmax())
            gen.append(nxt); gen_logits.append(last); margins.append(float(top2[0] - top2[1]))
            seq = torch.cat([seq, torch.tensor([nxt])])
        # ours, once over prompt + greedy tokens: its last G rows must be the greedy logits
        full_logits, _, _, _, _ = m64.trace(seq)
        checks = {"logits_rel_err": rel(own_logits, logits), "mtp_logits_rel_err": rel(own_mtp, mtp),
                  "final_hidden_rel_err": rel(own_h, h),
                  "greedy_logits_rel_err": rel(full_logits[len(ids) - 1:len(ids) - 1 + G], torch.stack(gen_logits)),
                  "topk_same": all(torch.equal(own_topk[l], topk[l]) for l in topk),
                  "greedy_same": [int(x) for x in full_logits[len(ids) - 1:len(ids) - 1 + G].argmax(-1)] == gen}
        source = "make_fixtures.py float64 forward/mtp_forward on the exported weights"
    else:
        logits, mtp, h, hid, topk = own_logits, own_mtp, own_h, own_hid, own_topk
        seq = ids_t.clone()
        gen, gen_logits, margins = [], [], []
        for _ in range(G):
            lg, _, _, _, _ = m64.trace(seq)
            last = lg[-1]
            top2 = last.topk(2)[0]
            nxt = int(last.argmax())
            gen.append(nxt); gen_logits.append(last); margins.append(float(top2[0] - top2[1]))
            seq = torch.cat([seq, torch.tensor([nxt])])
        source = "tools/train_tiny model.py float64 (no --reference-impl: not an independent check)"
        log("WARNING: no --reference-impl given; the reference comes from the trainer's own model code")
    ref = {"input_ids": ids_t.to(torch.int32), "logits": logits.float(), "final_hidden": h.float(),
           "greedy_ids": torch.tensor(gen, dtype=torch.int32), "greedy_logits": torch.stack(gen_logits).float()}
    for i, x in enumerate(hid):
        ref[f"hidden.{i}"] = x.float()
    for l in sorted(topk):
        ref[f"topk.{l}"] = topk[l].to(torch.int32)
    ref["mtp_logits"] = mtp.float()
    meta = {"note": "float64 reference; logits[i] predicts token i+1; mtp_logits[i] predicts token i+2",
            "min_greedy_margin": f"{min(margins):.6g}", "source": source}
    nbytes = hfio.save_safetensors(path, ref, meta)
    return {"T": len(ids), "G": G, "min_greedy_margin": min(margins), "bytes": nbytes, "source": source,
            "greedy_ids": gen, **checks}
