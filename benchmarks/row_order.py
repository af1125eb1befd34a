"""Row-order products: the VF with `FusionDLN.effective_weights` (from the output side, row
vectors times matrices) vs a naive right-to-left matrix chain W_L @ (W_{L-1} @ (... W_1)).

The VF is -grad of the population loss `Statistics.loss(W_tot)` w.r.t. all layers, jitted,
one member and a vmapped batch. Configurations (a 3-5x difference measured before):
H = 100, L = 4, D = 100 and H = 256, L = 6, D = 256 (D = d_A + d_B, split evenly; fusion at
L_f = L / 2; output dimension 1; random statistics). FLOP counts: the matrix chain
costs ~ 2 H^2 D per hidden layer (x ~3 with AD), the row chain ~ 2 H^2 per layer.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

import multimodal_dln as mdln

from . import _common as C

NAME = "row_order"
DESCRIPTION = "VF time: row-order effective_weights vs naive right-to-left matrix chain"


def configs(mode: str):
    if mode == "tiny":
        return [dict(H=16, L=4, D=16, batch=2)]
    return [dict(H=100, L=4, D=100, batch=8), dict(H=256, L=6, D=256, batch=None)]


def naive_total(net: mdln.FusionDLN):
    """[W_A^tot, W_B^tot] by right-to-left matrix products (inputs side first)."""

    def chain(branch, fusion):
        m = None
        for w in branch:
            m = w if m is None else w @ m
        m = fusion if m is None else fusion @ m
        for w in net.shared:
            m = w @ m
        return m

    return jnp.concatenate(
        [chain(net.branch_A, net.fusion_A), chain(net.branch_B, net.fusion_B)], axis=-1
    )


@eqx.filter_jit
def _build(H, L, dA, dB, B):
    stats = mdln.Statistics.random(jax.random.key(1), dA, dB)
    keys = jax.random.split(jax.random.key(0), B)
    nets = eqx.filter_vmap(
        lambda k: mdln.FusionDLN.init(
            k, depth=L, fusion_layer=L // 2, width=H, d_A=dA, d_B=dB, init_scale=0.5, init="random"
        )
    )(keys)
    return nets, stats


def run_config(c: dict) -> dict:
    H, L, D, B = c["H"], c["L"], c["D"], c["batch"]
    dA = D // 2
    nets, stats = _build(H, L, dA, D - dA, B or 1)
    net1 = jax.tree.map(lambda a: a[0] if eqx.is_array(a) else a, nets)

    def vf(total):
        def f(net):
            g = jax.grad(lambda n: stats.loss(total(n)))(net)
            return jax.tree.map(jnp.negative, g)

        return f

    row = vf(lambda n: n.total_weights())
    naive = vf(naive_total)
    # Same gradient both ways (sanity).
    g1, g2 = row(net1), naive(net1)
    diff = max(
        float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-300))
        for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2))
    )
    res = {"config": c, "params_per_member": C.n_params(nets), "max_rel_grad_diff": diff}
    variants = [("single", None, net1)] + ([("batched", "vmap", nets)] if c["batch"] else [])
    for label, fn, arg in variants:
        for name, f in (("row", row), ("naive", naive)):
            jf = eqx.filter_jit(eqx.filter_vmap(f) if fn == "vmap" else f)
            res[f"{label}_{name}"] = C.time_per_call(
                lambda jf=jf, arg=arg: C.block(jf(arg)), repeats=min(3, C.TIMING["repeats"])
            )
        res[f"{label}_speedup"] = res[f"{label}_naive"]["wall_s"] / res[f"{label}_row"]["wall_s"]
    return res


def run(mode: str = "full") -> dict:
    results = [run_config(c) for c in configs(mode)]
    rows = []
    for r in results:
        c = r["config"]
        lab = f"H={c['H']} L={c['L']} D={c['D']}"
        rows.append(
            C.row(
                f"{lab}: VF time naive chain / row order (1 member)",
                r["single_speedup"],
                goal="> 1 (notes: 3-5x)",
                met=r["single_speedup"] > 1,
                note=f"{r['single_row']['wall_s'] * 1e6:.0f} vs "
                f"{r['single_naive']['wall_s'] * 1e6:.0f} us",
            )
        )
        if c["batch"]:
            rows.append(
                C.row(
                    f"{lab}: same, vmapped over {c['batch']} members",
                    r["batched_speedup"],
                    goal="> 1",
                    met=r["batched_speedup"] > 1,
                )
            )
    return {"rows": rows, "details": {"configs": results}}
