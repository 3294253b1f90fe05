"""A compact DeepSeek-V3 model for training, with the math of shared/fixtures/generators/make_fixtures.py:
MLA with q_lora and YaRN RoPE on adjacent pairs (softmax scale x mscale^2), a dense first layer,
noaux_tc sigmoid routing (correction bias, group-limited top-k) over routed experts plus shared experts,
and an MTP depth-1 block. The same module runs in float64 on the CPU for checking against the reference.

Routed experts are computed densely (every expert on every token, weighted by a routing matrix that is
zero outside the chosen top-k): the same sum as the sparse form, but a few large matrix products instead
of per-expert gathers, which is what a tiny model on a big GPU wants.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

F64 = torch.float64
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def up(x):
    """Elementwise work in float32 (float64 stays float64)."""
    return x if x.dtype == F64 else x.float()


def no_autocast(device_type):
    return torch.autocast(device_type=device_type, enabled=False)


# ------------------------------------------------------------------------------------------- config
BASE = dict(
    vocab_size=4096, hidden_size=256, intermediate_size=768, moe_intermediate_size=64,
    num_hidden_layers=5, first_k_dense_replace=1, num_attention_heads=8,
    q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
    n_routed_experts=16, n_shared_experts=1, num_experts_per_tok=4, n_group=4, topk_group=2,
    routed_scaling_factor=2.5, norm_topk_prob=True, rms_norm_eps=1e-6, rope_theta=10000,
    max_position_embeddings=512, num_nextn_predict_layers=1,
    rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 128,
                  "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})


def config_json(c):
    """The keys make_fixtures.py's config_json writes (non-fp8), with our hyperparameters."""
    out = {
        "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
        "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 0, "eos_token_id": 1,
        "ep_size": 1, "hidden_act": "silu", "initializer_range": 0.02, "moe_layer_freq": 1,
        "num_key_value_heads": c["num_attention_heads"], "scoring_func": "sigmoid", "seq_aux": True,
        "tie_word_embeddings": False, "topk_method": "noaux_tc", "torch_dtype": "bfloat16", "use_cache": True,
        "aux_loss_alpha": 0.001,
    }
    out.update(c)
    return out


def yarn_inv_freq(c):
    """YaRN-scaled rotary frequencies (float64), as DESIGN.md states them."""
    d, base = c["qk_rope_head_dim"], float(c["rope_theta"])
    f = 1.0 / (base ** (torch.arange(0, d, 2, dtype=F64) / d))
    rs = c.get("rope_scaling")
    if not rs:
        return f
    fac, orig = rs["factor"], rs["original_max_position_embeddings"]
    bf, bs = rs.get("beta_fast", 32), rs.get("beta_slow", 1)

    def corr(r):
        return d * math.log(orig / (r * 2 * math.pi)) / (2 * math.log(base))
    lo, hi = max(math.floor(corr(bf)), 0), min(math.ceil(corr(bs)), d - 1)
    if lo == hi:
        hi += 0.001
    ramp = torch.clamp((torch.arange(d // 2, dtype=F64) - lo) / (hi - lo), 0, 1)
    return f / fac * ramp + f * (1 - ramp)


def softmax_scale(c):
    s = (c["qk_nope_head_dim"] + c["qk_rope_head_dim"]) ** -0.5
    rs = c.get("rope_scaling")
    if rs and rs.get("mscale_all_dim") and rs["factor"] > 1:
        m = 0.1 * rs["mscale_all_dim"] * math.log(rs["factor"]) + 1.0
        s *= m * m
    return s


def rope(x, cos, sin):
    """x [..., T, d]: rotate adjacent pairs (2i, 2i+1); cos/sin [T, d/2]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1).flatten(-2)


# ------------------------------------------------------------------------------------------- modules
class RMSNorm(nn.Module):
    def __init__(self, n, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x):
        xf = up(x)
        return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * up(self.weight)


def linear(i, o):
    return nn.Linear(i, o, bias=False)


class MLA(nn.Module):
    def __init__(self, c):
        super().__init__()
        H, nh = c["hidden_size"], c["num_attention_heads"]
        self.nh, self.dn, self.dr, self.dv = nh, c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
        self.r = c["kv_lora_rank"]
        eps = c["rms_norm_eps"]
        if c["q_lora_rank"]:
            self.q_a_proj = linear(H, c["q_lora_rank"])
            self.q_a_layernorm = RMSNorm(c["q_lora_rank"], eps)
            self.q_b_proj = linear(c["q_lora_rank"], nh * (self.dn + self.dr))
        else:
            self.q_proj = linear(H, nh * (self.dn + self.dr))
        self.kv_a_proj_with_mqa = linear(H, self.r + self.dr)
        self.kv_a_layernorm = RMSNorm(self.r, eps)
        self.kv_b_proj = linear(self.r, nh * (self.dn + self.dv))
        self.o_proj = linear(nh * self.dv, H)
        self.scale = softmax_scale(c)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        nh, dn, dr, dv, r = self.nh, self.dn, self.dr, self.dv, self.r
        if hasattr(self, "q_a_proj"):
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        else:
            q = self.q_proj(x)
        q = q.view(B, T, nh, dn + dr).transpose(1, 2)                      # [B, nh, T, dn+dr]
        kv = self.kv_a_proj_with_mqa(x)                                    # [B, T, r+dr]
        ckv, kr = kv[..., :r], kv[..., r:]
        kvb = self.kv_b_proj(self.kv_a_layernorm(ckv)).view(B, T, nh, dn + dv).transpose(1, 2)
        kn, v = kvb[..., :dn], kvb[..., dn:]
        qr = rope(up(q[..., dn:]), cos, sin).to(q.dtype)
        kr = rope(up(kr), cos, sin).to(kn.dtype)[:, None].expand(B, nh, T, dr)
        qf = torch.cat([q[..., :dn], qr], -1)
        kf = torch.cat([kn, kr], -1)
        o = None
        if HAS_SDPA and qf.dtype != F64:
            try:
                o = F.scaled_dot_product_attention(qf, kf, v, is_causal=True, scale=self.scale)
            except TypeError:   # torch < 2.1 has no scale argument
                o = None
        if o is None:
            s = (qf @ kf.transpose(-1, -2)) * self.scale
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
            s = s.masked_fill(mask, float("-inf"))
            o = torch.softmax(up(s), -1).to(v.dtype) @ v
        return self.o_proj(o.transpose(1, 2).reshape(B, T, nh * dv))


class MLP(nn.Module):
    def __init__(self, H, I):
        super().__init__()
        self.gate_proj, self.up_proj, self.down_proj = linear(H, I), linear(H, I), linear(I, H)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MoE(nn.Module):
    """noaux_tc routing over n_routed_experts (sigmoid scores, correction bias for choice only,
    group-limited top-k) + shared experts. In training it accumulates each expert's load for the
    aux-loss-free bias update and computes the small sequence-wise balance loss."""

    def __init__(self, c, seq_aux_alpha=0.0):
        super().__init__()
        H, I, E = c["hidden_size"], c["moe_intermediate_size"], c["n_routed_experts"]
        self.H, self.I, self.E = H, I, E
        self.k, self.ng, self.tg = c["num_experts_per_tok"], c["n_group"], c["topk_group"]
        self.norm_topk, self.rsf = c["norm_topk_prob"], c["routed_scaling_factor"]
        self.gate_weight = nn.Parameter(torch.empty(E, H))
        self.register_buffer("e_score_correction_bias", torch.zeros(E))
        self.w_gate_up = nn.Parameter(torch.empty(E, 2, I, H))   # expert e: gate = [e,0], up = [e,1]
        self.w_down = nn.Parameter(torch.empty(H, E, I))          # expert e: down = [:, e, :]
        self.shared_experts = MLP(H, I * c["n_shared_experts"])
        self.alpha = seq_aux_alpha
        self.register_buffer("load", torch.zeros(E), persistent=False)       # this step, for the bias rule
        self.register_buffer("load_log", torch.zeros(E), persistent=False)   # since the last log line
        self.aux_loss = None
        self.last_idx = None

    def route(self, x2):
        """x2 [N, H] -> (scores [N,E], chosen mask [N,E], idx [N,k], weights [N,E] zero outside idx)."""
        N, E = x2.shape[0], self.E
        with no_autocast(x2.device.type):
            scores = torch.sigmoid(up(x2) @ up(self.gate_weight).t())
        with torch.no_grad():
            choice = scores + self.e_score_correction_bias.to(scores.dtype)[None, :]
            gs = choice.view(N, self.ng, E // self.ng).topk(2, dim=-1)[0].sum(-1)
            gidx = gs.topk(self.tg, dim=-1)[1]
            gmask = torch.zeros_like(gs).scatter_(1, gidx, 1.0)
            smask = gmask[:, :, None].expand(N, self.ng, E // self.ng).reshape(N, E)
            choice = choice.masked_fill(smask == 0, float("-inf"))
            idx = choice.topk(self.k, dim=-1)[1]
            sel = torch.zeros_like(scores).scatter_(1, idx, 1.0)
        w = scores * sel
        if self.norm_topk:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        return scores, sel, idx, w * self.rsf

    def forward(self, x):
        B, T, H = x.shape
        E, I = self.E, self.I
        x2 = x.reshape(B * T, H)
        scores, sel, idx, w = self.route(x2)
        self.last_idx = idx
        if self.training:
            self.load += sel.sum(0).detach()
            if self.alpha > 0:
                s_norm = scores / scores.sum(-1, keepdim=True)
                f = sel.view(B, T, E).sum(1) * (E / (self.k * T))
                self.aux_loss = self.alpha * (f * s_norm.view(B, T, E).mean(1)).sum(-1).mean()
        gu = F.linear(x2, self.w_gate_up.view(E * 2 * I, H)).view(B * T, E, 2, I)
        h = F.silu(gu[:, :, 0]) * gu[:, :, 1]                                  # [N, E, I]
        h = h * w.to(h.dtype)[:, :, None]
        out = F.linear(h.reshape(B * T, E * I), self.w_down.view(H, E * I))
        return out.view(B, T, H) + self.shared_experts(x)


class Block(nn.Module):
    def __init__(self, c, layer, seq_aux_alpha):
        super().__init__()
        eps = c["rms_norm_eps"]
        self.input_layernorm = RMSNorm(c["hidden_size"], eps)
        self.self_attn = MLA(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], eps)
        if layer < c["first_k_dense_replace"]:
            self.mlp = MLP(c["hidden_size"], c["intermediate_size"])
        else:
            self.mlp = MoE(c, seq_aux_alpha)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class MTPBlock(nn.Module):
    """x = eh_proj([enorm(embed(t+1)); hnorm(h_t)]) -> decoder layer -> shared_head.norm (head shared)."""

    def __init__(self, c, seq_aux_alpha):
        super().__init__()
        H, eps = c["hidden_size"], c["rms_norm_eps"]
        self.enorm, self.hnorm = RMSNorm(H, eps), RMSNorm(H, eps)
        self.eh_proj = linear(2 * H, H)
        self.block = Block(c, c["num_hidden_layers"], seq_aux_alpha)
        self.shared_head_norm = RMSNorm(H, eps)

    def forward(self, h, next_ids, embed, cos, sin):
        x = self.eh_proj(torch.cat([self.enorm(embed(next_ids)), self.hnorm(h)], -1))
        return self.shared_head_norm(self.block(x, cos, sin))


class Model(nn.Module):
    def __init__(self, c, seq_aux_alpha=0.0):
        super().__init__()
        self.c = dict(c)
        H, V = c["hidden_size"], c["vocab_size"]
        self.embed_tokens = nn.Embedding(V, H)
        self.layers = nn.ModuleList([Block(c, l, seq_aux_alpha) for l in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(H, c["rms_norm_eps"])
        self.lm_head = linear(H, V)
        self.mtp = MTPBlock(c, seq_aux_alpha) if c.get("num_nextn_predict_layers") else None
        self.inv_freq64 = yarn_inv_freq(c)      # a plain attribute: never cast by .to()/.float()
        self._rope = {}

    def moes(self):
        if not hasattr(self, "_moes"):
            self._moes = [m for m in self.modules() if isinstance(m, MoE)]
        return self._moes

    def init_weights(self, std=0.02):
        n_res = 2 * (self.c["num_hidden_layers"] + 1)
        for name, p in self.named_parameters():
            if p.dim() == 1:
                nn.init.ones_(p)
            elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight") or name.endswith("w_down"):
                nn.init.normal_(p, 0.0, std / math.sqrt(n_res))
            else:
                nn.init.normal_(p, 0.0, std)
        for m in self.moes():
            m.e_score_correction_bias.zero_()

    def rope_tables(self, T, device, dtype):
        key = (T, str(device), dtype)
        if key not in self._rope:
            ang = torch.arange(T, dtype=F64)[:, None] * self.inv_freq64[None, :]
            self._rope = {key: (ang.cos().to(device=device, dtype=dtype), ang.sin().to(device=device, dtype=dtype))}
        return self._rope[key]

    def forward(self, ids, with_mtp=True):
        """ids [B, T] -> logits [B,T,V], mtp_logits [B,T-1,V] (row i predicts ids[i+2]), final hidden [B,T,H]."""
        B, T = ids.shape
        dtype = F64 if self.norm.weight.dtype == F64 else torch.float32
        cos, sin = self.rope_tables(T, ids.device, dtype)
        x = self.embed_tokens(ids)
        x = up(x)
        for blk in self.layers:
            x = blk(x, cos, sin)
        h = self.norm(x)
        logits = self.lm_head(h)
        mtp_logits = None
        if with_mtp and self.mtp is not None and T > 1:
            hm = self.mtp(h[:, :-1], ids[:, 1:], self.embed_tokens, cos[:T - 1], sin[:T - 1])
            mtp_logits = self.lm_head(hm)
        return logits, mtp_logits, h

    @torch.no_grad()
    def trace(self, ids):
        """Single sequence ids [T] -> logits [T,V], mtp [T-1,V], final hidden [T,H], hiddens (embeddings and
        after each layer), top-k per MoE layer (sorted, int32) keyed by layer index."""
        T = ids.shape[0]
        dtype = F64 if self.norm.weight.dtype == F64 else torch.float32
        cos, sin = self.rope_tables(T, ids.device, dtype)
        x = up(self.embed_tokens(ids[None]))
        hiddens, topk = [x[0]], {}
        for l, blk in enumerate(self.layers):
            x = blk(x, cos, sin)
            hiddens.append(x[0])
            if isinstance(blk.mlp, MoE):
                topk[l] = torch.sort(blk.mlp.last_idx, dim=-1)[0].to(torch.int32)
        h = self.norm(x)
        hm = self.mtp(h[:, :-1], ids[None, 1:], self.embed_tokens, cos[:T - 1], sin[:T - 1])
        return self.lm_head(h)[0], self.lm_head(hm)[0], h[0], hiddens, topk

    # ------------------------------------------------------------------ HF names
    def _hf_views(self):
        """Official DeepSeek-V3 names (MTP block as layers.<L>) -> live views of our parameters/buffers.
        The MTP block's embed_tokens/shared_head.head are the main ones (tied in training, copied on export)."""
        W = {}
        L = self.c["num_hidden_layers"]

        def block(p, b):
            W[p + "input_layernorm.weight"] = b.input_layernorm.weight.data
            a = b.self_attn
            for n in ("q_a_proj", "q_a_layernorm", "q_b_proj", "q_proj", "kv_a_proj_with_mqa", "kv_a_layernorm",
                      "kv_b_proj", "o_proj"):
                if hasattr(a, n):
                    W[f"{p}self_attn.{n}.weight"] = getattr(a, n).weight.data
            W[p + "post_attention_layernorm.weight"] = b.post_attention_layernorm.weight.data
            m = b.mlp
            if isinstance(m, MoE):
                W[p + "mlp.gate.weight"] = m.gate_weight.data
                W[p + "mlp.gate.e_score_correction_bias"] = m.e_score_correction_bias
                for e in range(m.E):
                    q = f"{p}mlp.experts.{e}."
                    W[q + "gate_proj.weight"] = m.w_gate_up.data[e, 0]
                    W[q + "up_proj.weight"] = m.w_gate_up.data[e, 1]
                    W[q + "down_proj.weight"] = m.w_down.data[:, e, :]
                s, q = m.shared_experts, p + "mlp.shared_experts."
            else:
                s, q = m, p + "mlp."
            W[q + "gate_proj.weight"] = s.gate_proj.weight.data
            W[q + "up_proj.weight"] = s.up_proj.weight.data
            W[q + "down_proj.weight"] = s.down_proj.weight.data

        W["model.embed_tokens.weight"] = self.embed_tokens.weight.data
        for l, b in enumerate(self.layers):
            block(f"model.layers.{l}.", b)
        W["model.norm.weight"] = self.norm.weight.data
        W["lm_head.weight"] = self.lm_head.weight.data
        if self.mtp is not None:
            p = f"model.layers.{L}."
            block(p, self.mtp.block)
            W[p + "enorm.weight"] = self.mtp.enorm.weight.data
            W[p + "hnorm.weight"] = self.mtp.hnorm.weight.data
            W[p + "eh_proj.weight"] = self.mtp.eh_proj.weight.data
            W[p + "embed_tokens.weight"] = self.embed_tokens.weight.data
            W[p + "shared_head.norm.weight"] = self.mtp.shared_head_norm.weight.data
            W[p + "shared_head.head.weight"] = self.lm_head.weight.data
        return W

    def hf_state(self):
        """name -> float32 CPU copy, in the official layout."""
        return {k: v.detach().float().cpu().contiguous() for k, v in self._hf_views().items()}

    @torch.no_grad()
    def load_hf_state(self, W):
        """Inverse of hf_state; the MTP copies of embed/head must equal the main ones."""
        live = self._hf_views()
        if set(live) != set(W):
            raise RuntimeError(f"tensor names differ: missing {sorted(set(live) - set(W))[:5]}, "
                               f"extra {sorted(set(W) - set(live))[:5]}")
        L = self.c["num_hidden_layers"]
        for a, b in ((f"model.layers.{L}.embed_tokens.weight", "model.embed_tokens.weight"),
                     (f"model.layers.{L}.shared_head.head.weight", "lm_head.weight")):
            if a in W and not torch.equal(W[a], W[b]):
                raise RuntimeError(f"{a} differs from {b}; this trainer ties them")
        for k, v in W.items():
            dst = live[k]
            if tuple(v.shape) != tuple(dst.shape):
                raise RuntimeError(f"{k}: shape {tuple(v.shape)}, expected {tuple(dst.shape)}")
            dst.copy_(v.to(device=dst.device, dtype=dst.dtype))


def param_counts(model):
    """Unique trainable parameters, exported tensor elements (with the MTP copies), active per token."""
    c = model.c
    unique = sum(p.numel() for p in model.parameters())
    exported = sum(v.numel() for v in model.hf_state().values())
    E, k = c["n_routed_experts"], c["num_experts_per_tok"]
    inactive = 0
    for m in model.moes():
        inactive += (m.w_gate_up.numel() + m.w_down.numel()) * (E - k) // E
    return {"unique": unique, "exported": exported, "active_per_token": unique - inactive - model.embed_tokens.weight.numel()}
