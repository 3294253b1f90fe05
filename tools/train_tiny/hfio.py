"""safetensors reading/writing (no `safetensors` package needed) and the Hugging Face directory layout:
config.json, sharded model-0000N-of-0000M.safetensors + model.safetensors.index.json, tokenizer.json."""
import json
import os
import shutil
import struct

import numpy as np
import torch

_TAG = {torch.float32: "F32", torch.bfloat16: "BF16", torch.int32: "I32", torch.int64: "I64", torch.float64: "F64"}
_NP = {"F32": np.float32, "I32": np.int32, "I64": np.int64, "F64": np.float64, "BF16": np.int16}


def _raw(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save_safetensors(path, tensors, meta=None):
    """tensors: name -> torch tensor (dtype decides the tag). Header padded to 8 bytes like the fixtures."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        raw = _raw(t)
        header[name] = {"dtype": _TAG[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if meta:
        header["__metadata__"] = {k: str(v) for k, v in meta.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return 8 + len(h) + off


def load_safetensors(path):
    """Returns (name -> torch tensor in its stored dtype, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        arr = np.frombuffer(data[base + a:base + b], dtype=_NP[e["dtype"]]).reshape(e["shape"]).copy()
        t = torch.from_numpy(arr)
        if e["dtype"] == "BF16":
            t = t.view(torch.bfloat16)
        out[name] = t
    return out, meta


def shard_plan(sizes, max_bytes):
    """Greedy, in order: names -> shard index. Fails if one tensor alone exceeds the limit."""
    plan, cur, idx = {}, 0, 0
    for name, nbytes in sizes:
        if nbytes > max_bytes:
            raise ValueError(f"tensor {name} has {nbytes} bytes, more than one shard may hold ({max_bytes})")
        if cur and cur + nbytes > max_bytes:
            idx += 1
            cur = 0
        plan[name] = idx
        cur += nbytes
    return plan, idx + 1


def save_hf_dir(out_dir, weights, config, tokenizer_path, max_shard_bytes):
    """weights: ordered name -> tensor (already in the stored dtype). Writes the sharded checkpoint, the index,
    config.json and a copy of tokenizer.json. Returns the list of files written with their sizes."""
    os.makedirs(out_dir, exist_ok=True)
    # leave room for each shard's JSON header (about 150 bytes per tensor)
    sizes = [(k, v.numel() * v.element_size() + 200) for k, v in weights.items()]
    plan, n = shard_plan(sizes, max_shard_bytes - 4096)
    files, weight_map, total = [], {}, 0
    for s in range(n):
        fname = f"model-{s + 1:05d}-of-{n:05d}.safetensors"
        part = {k: v for k, v in weights.items() if plan[k] == s}
        nbytes = save_safetensors(os.path.join(out_dir, fname), part, {"format": "pt"})
        if nbytes >= max_shard_bytes:
            raise RuntimeError(f"{fname}: {nbytes} bytes, over the shard limit {max_shard_bytes}")
        for k in part:
            weight_map[k] = fname
            total += part[k].numel() * part[k].element_size()
        files.append((fname, nbytes))
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copyfile(tokenizer_path, os.path.join(out_dir, "tokenizer.json"))
    for fn in ("model.safetensors.index.json", "config.json", "tokenizer.json"):
        files.append((fn, os.path.getsize(os.path.join(out_dir, fn))))
    return files


def load_hf_dir(d):
    """Reads config.json and every shard named by the index; checks the index against the shards."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        idx = json.load(f)
    weights = {}
    for fname in sorted(set(idx["weight_map"].values())):
        part, _ = load_safetensors(os.path.join(d, fname))
        for k, v in part.items():
            if idx["weight_map"].get(k) != fname:
                raise RuntimeError(f"{d}: {k} is in {fname} but the index says {idx['weight_map'].get(k)}")
            weights[k] = v
    missing = set(idx["weight_map"]) - set(weights)
    if missing:
        raise RuntimeError(f"{d}: index names tensors missing from the shards: {sorted(missing)[:5]}")
    return cfg, weights
