#!/usr/bin/env python3
"""Re-check an exported model directory in a fresh process (CPU, float64; no GPU, no `safetensors` needed):

  python3 tools/train_tiny/check_export.py DIR --reference-impl shared/fixtures/generators/make_fixtures.py

- the files: config.json with exactly make_fixtures.py's keys, sharded safetensors + index (each shard
  under --max-shard-bytes), tokenizer.json, reference.safetensors; at most 8 files;
- the tensors: every name the DeepSeek-V3 layout needs (MTP block as model.layers.<n>.*), BF16/F32 only,
  the MTP copies of embed_tokens/shared_head.head equal to the main ones;
- the reference: recomputed from the stored weights with make_fixtures.py's forward/mtp_forward (and
  greedy continuation) and compared with reference.safetensors; the trainer's own float64 model too.
Exit status 0 only when everything holds.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch   # noqa: E402

import evaluate as EV   # noqa: E402
import hfio              # noqa: E402
from model import BASE, Model, F64   # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir")
    p.add_argument("--reference-impl", required=True)
    p.add_argument("--max-shard-bytes", type=int, default=12_000_000)
    p.add_argument("--max-files", type=int, default=8)
    p.add_argument("--tol", type=float, default=1e-6, help="max rel err vs the stored float32 reference")
    a = p.parse_args()
    impl = EV.load_impl(a.reference_impl)
    fails = []

    def check(ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            fails.append(what)

    names = sorted(os.listdir(a.dir))
    check(len(names) <= a.max_files, f"{len(names)} files <= {a.max_files}: {names}")
    for n in ("config.json", "model.safetensors.index.json", "tokenizer.json", "reference.safetensors"):
        check(n in names, f"{n} present")
    cfg, W = hfio.load_hf_dir(a.dir)
    with open(os.path.join(a.dir, "model.safetensors.index.json")) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    for s in shards:
        size = os.path.getsize(os.path.join(a.dir, s))
        check(size < a.max_shard_bytes, f"{s}: {size} bytes < {a.max_shard_bytes}")
    base = {k: cfg[k] for k in BASE if k in cfg}
    check(impl.config_json(base, False) == cfg, "config.json has exactly make_fixtures.config_json's keys and defaults")
    check(cfg.get("model_type") == "deepseek_v3" and cfg.get("num_nextn_predict_layers") == 1,
          "model_type deepseek_v3, num_nextn_predict_layers 1")
    want = set(Model(cfg).hf_state())
    check(set(W) == want, f"tensor names: {len(W)} stored, {len(want)} expected"
          + (f"; missing {sorted(want - set(W))[:3]} extra {sorted(set(W) - want)[:3]}" if set(W) != want else ""))
    check(all(v.dtype in (torch.bfloat16, torch.float32) for v in W.values()), "dtypes BF16/F32 only")
    L = cfg["num_hidden_layers"]
    check(torch.equal(W[f"model.layers.{L}.embed_tokens.weight"], W["model.embed_tokens.weight"]) and
          torch.equal(W[f"model.layers.{L}.shared_head.head.weight"], W["lm_head.weight"]),
          f"model.layers.{L}.embed_tokens / shared_head.head are copies of embed_tokens / lm_head")
    n_params = sum(v.numel() for v in W.values())
    print(f"      {n_params / 1e6:.3f} M parameters stored; Q8_0 about {n_params * 34 / 32 / 2**20:.2f} MiB")

    ref, meta = hfio.load_safetensors(os.path.join(a.dir, "reference.safetensors"))
    W64 = {k: v.to(F64) for k, v in W.items()}
    ids = ref["input_ids"].long()
    rec, hid = [], []
    logits, h = impl.forward(W64, cfg, ids, rec, hid)
    mtp = impl.mtp_forward(W64, cfg, ids, h)
    check(EV.rel(logits, ref["logits"].to(F64)) < a.tol, f"logits vs make_fixtures.py: {EV.rel(logits, ref['logits'].to(F64)):.2e}")
    check(EV.rel(mtp, ref["mtp_logits"].to(F64)) < a.tol, f"mtp_logits: {EV.rel(mtp, ref['mtp_logits'].to(F64)):.2e}")
    check(EV.rel(h, ref["final_hidden"].to(F64)) < a.tol, f"final_hidden: {EV.rel(h, ref['final_hidden'].to(F64)):.2e}")
    check(all(EV.rel(x, ref[f"hidden.{i}"].to(F64)) < a.tol for i, x in enumerate(hid)), f"hidden.0..{len(hid) - 1}")
    moe_layers = [l for l in range(L) if l >= cfg["first_k_dense_replace"]]
    check(all(torch.equal(r, ref[f"topk.{l}"]) for l, r in zip(moe_layers, rec)), f"topk.{moe_layers}")
    seq, margins = ids.clone(), []
    for i in range(len(ref["greedy_ids"])):
        lg, _ = impl.forward(W64, cfg, seq)
        top2 = lg[-1].topk(2)[0]
        margins.append(float(top2[0] - top2[1]))
        check(EV.rel(lg[-1], ref["greedy_logits"][i].to(F64)) < a.tol and int(lg[-1].argmax()) == int(ref["greedy_ids"][i]),
              f"greedy step {i}: token {int(ref['greedy_ids'][i])}")
        seq = torch.cat([seq, ref["greedy_ids"][i:i + 1].long()])
    check(abs(min(margins) - float(meta["min_greedy_margin"])) < 1e-3 * max(1.0, min(margins)),
          f"min_greedy_margin {meta['min_greedy_margin']}")
    m64 = Model(cfg).to(F64)
    m64.load_hf_state(W64)
    m64.eval()
    own_logits, own_mtp, _, _, _ = m64.trace(ids)
    check(EV.rel(own_logits, logits) < 1e-9 and EV.rel(own_mtp, mtp) < 1e-9,
          f"trainer's model.py float64 vs make_fixtures.py: logits {EV.rel(own_logits, logits):.1e}, "
          f"mtp {EV.rel(own_mtp, mtp):.1e}")
    print("PASS" if not fails else f"FAIL ({len(fails)})")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
