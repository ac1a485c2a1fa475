// C API entry points of the norm, activation, rotary, attention, embedding and reduction ops (qwen3vl.h, "Ops").
// Each checks its arguments (OpArgs: presence, backend, dtype, shape; then ranges and aliasing) and runs the op on
// the tensors' backend (core/ops.h), which checks what the tensors hold.
#include <cmath>
#include <cstdint>
#include <string>

#include "boundary.h"
#include "op_args.h"
#include "op_forms.h"
#include "qwen3vl.h"

using namespace qwen3vl;

extern "C" {

qwen3vl_status qwen3vl_op_rms_norm(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight,
                                   float eps) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_rms_norm");
        Tensor& o = args.f32(out, "out");
        const Tensor& tx = args.f32(x, "x");
        const Tensor& w = args.weight(weight, "weight");
        args.at_least_1d(tx, "x");
        args.same_shape(o, "out", tx, "x");
        args.shape(w, "weight", {last_dim(tx)});
        args.in_place_or_disjoint(o, "out", tx, "x");
        args.eps(eps);
        args.run([&](Backend& be) {
            be.rms_norm(data_of<float>(o), data_of<float>(tx), weight_of(w), rows_of(tx), last_dim(tx), eps);
        });
    });
}

qwen3vl_status qwen3vl_op_layer_norm(qwen3vl_tensor* out, const qwen3vl_tensor* x, const qwen3vl_tensor* weight,
                                     const qwen3vl_tensor* bias, float eps) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_layer_norm");
        Tensor& o = args.f32(out, "out");
        const Tensor& tx = args.f32(x, "x");
        const Tensor& w = args.weight(weight, "weight");
        const Tensor& b = args.weight(bias, "bias");
        args.at_least_1d(tx, "x");
        args.same_shape(o, "out", tx, "x");
        args.shape(w, "weight", {last_dim(tx)});
        args.shape(b, "bias", {last_dim(tx)});
        args.in_place_or_disjoint(o, "out", tx, "x");
        args.eps(eps);
        args.run([&](Backend& be) {
            be.layer_norm(data_of<float>(o), data_of<float>(tx), weight_of(w), weight_of(b), rows_of(tx), last_dim(tx),
                          eps);
        });
    });
}

qwen3vl_status qwen3vl_op_argmax(qwen3vl_tensor* out, const qwen3vl_tensor* x) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_argmax");
        Tensor& o = args.i32(out, "out");
        const Tensor& tx = args.f32(x, "x");
        args.at_least_1d(tx, "x");
        args.require(last_dim(tx) <= INT32_MAX, "the last dimension of x exceeds the i32 range");
        args.shape(o, "out", {rows_of(tx)});
        args.run([&](Backend& be) { be.argmax(data_of<int32_t>(o), data_of<float>(tx), rows_of(tx), last_dim(tx)); });
    });
}

qwen3vl_status qwen3vl_op_top_k(qwen3vl_tensor* values, qwen3vl_tensor* indices, const qwen3vl_tensor* x, int64_t k) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_top_k");
        Tensor& tv = args.f32(values, "values");
        Tensor& ti = args.i32(indices, "indices");
        const Tensor& tx = args.f32(x, "x");
        args.at_least_1d(tx, "x");
        const int64_t n = last_dim(tx);
        args.require(n <= INT32_MAX, "the last dimension of x exceeds the i32 range");
        args.require(k >= 1 && k <= QWEN3VL_TOP_K_MAX && k <= n,
                     "k = " + std::to_string(k) + " must be in 1 .. min(" + std::to_string(n) +
                         " (the last dimension of x), QWEN3VL_TOP_K_MAX = " + std::to_string(QWEN3VL_TOP_K_MAX) + ")");
        Tensor want = tx;  // x's shape with the last dimension k
        want.shape[static_cast<size_t>(tx.ndim - 1)] = k;
        args.same_shape(tv, "values", want, "x with the last dimension k");
        args.same_shape(ti, "indices", want, "x with the last dimension k");
        args.require(!overlap(tv, ti) && !overlap(tv, tx) && !overlap(ti, tx),
                     "values, indices and x must not share memory");
        args.run([&](Backend& be) {
            be.top_k(data_of<float>(tv), data_of<int32_t>(ti), data_of<float>(tx), rows_of(tx), n, k);
        });
    });
}

qwen3vl_status qwen3vl_op_embedding(qwen3vl_tensor* out, const qwen3vl_tensor* table, const qwen3vl_tensor* ids) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_embedding");
        Tensor& o = args.f32(out, "out");
        const Tensor& tab = args.matrix(table, "table");
        const Tensor& ti = args.i32(ids, "ids");
        args.shape(tab, "table", {-1, -1});
        args.shape(ti, "ids", {-1});
        args.shape(o, "out", {ti.shape[0], tab.shape[1]});
        args.run([&](Backend& be) { be.embedding(data_of<float>(o), weight_of(tab), data_of<int32_t>(ti), ti.shape[0]); });
    });
}

qwen3vl_status qwen3vl_op_scatter_rows(qwen3vl_tensor* x, const qwen3vl_tensor* rows, const qwen3vl_tensor* src,
                                       int32_t accumulate) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_scatter_rows");
        Tensor& tx = args.f32(x, "x");
        const Tensor& tr = args.i32(rows, "rows");
        const Tensor& ts = args.f32(src, "src");
        args.shape(tx, "x", {-1, -1});
        args.shape(tr, "rows", {-1});
        args.shape(ts, "src", {tr.shape[0], tx.shape[1]});
        args.disjoint(ts, "src", tx, "x");
        const bool add = args.flag(accumulate, "accumulate");
        args.run([&](Backend& be) {
            be.scatter_rows(data_of<float>(tx), tx.shape[0], data_of<int32_t>(tr), data_of<float>(ts), tr.shape[0],
                            tx.shape[1], add);
        });
    });
}

qwen3vl_qk_norm_rope_attention_params qwen3vl_qk_norm_rope_attention_default_params(void) {
    qwen3vl_qk_norm_rope_attention_params p{};
    p.struct_size = sizeof(p);
    p.eps = 1e-6f;
    p.theta = 5000000.0f;
    p.mrope_section[0] = 24;
    p.mrope_section[1] = 20;
    p.mrope_section[2] = 20;
    return p;
}

qwen3vl_status qwen3vl_op_qk_norm_rope_attention(const qwen3vl_qk_norm_rope_attention_params* params) {
    return guarded([&] {
        require_struct(params, "qwen3vl_qk_norm_rope_attention_params");
        OpArgs args("qwen3vl_op_qk_norm_rope_attention");
        const qwen3vl_qk_norm_rope_attention_params& p = *params;
        Tensor& o = args.f32(p.out, "out");
        const QkNormRopeKv r = rope_kv_args(args, p);
        args.shape(o, "out", {r.tokens, r.q_heads, r.head_dim});
        args.require(r.kv_heads >= 1 && r.q_heads % r.kv_heads == 0,
                     "q has " + std::to_string(r.q_heads) + " heads, not a multiple of k's " +
                         std::to_string(r.kv_heads));
        const qwen3vl_tensor* inputs[] = {p.q, p.k, p.v, p.k_cache, p.v_cache};
        const char* names[] = {"q", "k", "v", "k_cache", "v_cache"};
        for (int i = 0; i < 5; ++i) args.disjoint(o, "out", args.tensor(inputs[i], names[i]), names[i]);
        const AttentionArgs a =
            causal_args(data_of<float>(o), r.q, args.tensor(p.k_cache, "k_cache"), args.tensor(p.v_cache, "v_cache"),
                        r.tokens, r.q_heads, r.kv_heads, r.head_dim, {r.n_past, r.n_past_device});
        args.run([&](Backend& be) { be.qk_norm_rope_attention(r, a); });
    });
}

qwen3vl_status qwen3vl_op_rope_vision(qwen3vl_tensor* qkv, const qwen3vl_tensor* positions, float theta) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_rope_vision");
        Tensor& t = args.f32(qkv, "qkv");
        const Tensor& pos = args.i32(positions, "positions");
        args.shape(t, "qkv", {-1, 3, -1, -1});
        args.shape(pos, "positions", {t.shape[0], 2});
        args.require(t.shape[3] % 4 == 0, "head_dim " + std::to_string(t.shape[3]) + " must be a multiple of 4");
        args.require(std::isfinite(theta) && theta > 0.0f, "theta must be finite and > 0");
        args.run([&](Backend& be) {
            be.rope_vision(data_of<float>(t), t.shape[0], t.shape[2], t.shape[3], data_of<int32_t>(pos), theta);
        });
    });
}

qwen3vl_attention_params qwen3vl_attention_default_params(void) {
    qwen3vl_attention_params p{};
    p.struct_size = sizeof(p);
    p.mask = QWEN3VL_ATTENTION_CAUSAL;
    return p;
}

qwen3vl_status qwen3vl_op_attention(const qwen3vl_attention_params* params) {
    return guarded([&] {
        require_struct(params, "qwen3vl_attention_params");
        OpArgs args("qwen3vl_op_attention");
        const qwen3vl_attention_params& p = *params;
        const int mode = raw_enum(p.mask);
        args.require(mode == QWEN3VL_ATTENTION_CAUSAL || mode == QWEN3VL_ATTENTION_SEGMENTS,
                     "unknown mask " + std::to_string(mode));
        Tensor& o = args.f32(p.out, "out");
        const Tensor& tq = args.f32(p.q, "q");
        args.disjoint(o, "out", tq, "q");
        AttentionArgs a{};
        if (mode == QWEN3VL_ATTENTION_CAUSAL) {
            args.require(p.segments == nullptr, "segments must be NULL with QWEN3VL_ATTENTION_CAUSAL");
            const Tensor& kc = args.cache(p.k_cache, "k_cache");
            const Tensor& vc = args.tensor(p.v_cache, "v_cache");
            args.dtype(vc, "v_cache", {kc.dtype});
            args.shape(tq, "q", {-1, -1, -1});
            const int64_t T = tq.shape[0], Hq = tq.shape[1], D = tq.shape[2];
            args.shape(kc, "k_cache", {-1, -1, D});
            const int64_t Hkv = kc.shape[1];
            args.shape(vc, "v_cache", {kc.shape[0], Hkv, D});
            args.shape(o, "out", {T, Hq, D});
            args.require(Hkv >= 1 && Hq % Hkv == 0, "q has " + std::to_string(Hq) +
                                                        " heads, not a multiple of the cache's " + std::to_string(Hkv));
            const NPast np = n_past_of(args, p.n_past, p.n_past_bound, p.n_past_tensor, kc.shape[0] - T, T);
            args.require(np.value >= 0 && np.value <= kc.shape[0] - T,
                         "n_past " + std::to_string(np.value) + " + " + std::to_string(T) +
                             " tokens exceeds the cache's " + std::to_string(kc.shape[0]) + " rows");
            args.disjoint(o, "out", kc, "k_cache");
            args.disjoint(o, "out", vc, "v_cache");
            a = causal_args(data_of<float>(o), data_of<float>(tq), kc, vc, T, Hq, Hkv, D, np);
        } else {
            args.require(p.k_cache == nullptr && p.v_cache == nullptr,
                         "k_cache and v_cache must be NULL with QWEN3VL_ATTENTION_SEGMENTS");
            args.require(p.n_past_tensor == nullptr, "n_past_tensor must be NULL with QWEN3VL_ATTENTION_SEGMENTS");
            args.require(p.n_past == 0, "n_past must be 0 with QWEN3VL_ATTENTION_SEGMENTS");
            args.require(p.n_past_bound == 0, "n_past_bound must be 0 with QWEN3VL_ATTENTION_SEGMENTS");
            const Tensor& seg = args.i32(p.segments, "segments");
            args.shape(tq, "q", {-1, 3, -1, -1});
            const int64_t T = tq.shape[0], H = tq.shape[2], D = tq.shape[3];
            args.shape(o, "out", {T, H, D});
            args.shape(seg, "segments", {-1});
            args.require(seg.shape[0] >= 2, "segments needs at least 2 entries (0 and T)");
            a.out = data_of<float>(o);
            a.q = data_of<float>(tq);
            a.q_stride = 3 * H * D;
            a.k = data_of<float>(tq) + H * D;
            a.v = data_of<float>(tq) + 2 * H * D;
            a.kv_dtype = QWEN3VL_DTYPE_F32;
            a.kv_stride = 3 * H * D;
            a.tokens = T;
            a.q_heads = H;
            a.kv_heads = H;
            a.head_dim = D;
            a.causal = false;
            a.segments = data_of<int32_t>(seg);  // the offsets are the backend's to check (core/ops.h)
            a.n_segments = seg.shape[0] - 1;
        }
        args.run([&](Backend& be) { be.attention(a); });
    });
}

qwen3vl_status qwen3vl_op_position_embedding(qwen3vl_tensor* out, const qwen3vl_tensor* table, int64_t grid_h,
                                             int64_t grid_w, int64_t merge) {
    return guarded([&] {
        OpArgs args("qwen3vl_op_position_embedding");
        Tensor& o = args.f32(out, "out");
        const Tensor& tab = args.weight(table, "table");
        args.shape(tab, "table", {-1, -1});
        int64_t side = static_cast<int64_t>(std::sqrt(static_cast<double>(tab.shape[0])));
        while (side * side > tab.shape[0]) --side;
        while ((side + 1) * (side + 1) <= tab.shape[0]) ++side;
        args.require(side * side == tab.shape[0],
                     "table has " + std::to_string(tab.shape[0]) + " rows, not a square grid");
        args.require(merge >= 1, "merge must be >= 1");
        args.require(grid_h >= 1 && grid_w >= 1 && grid_h % merge == 0 && grid_w % merge == 0 &&
                         grid_h <= (1 << 20) && grid_w <= (1 << 20),
                     "grid " + std::to_string(grid_h) + " x " + std::to_string(grid_w) +
                         " must be positive multiples of merge " + std::to_string(merge));
        args.shape(o, "out", {grid_h * grid_w, tab.shape[1]});
        args.run([&](Backend& be) {
            be.position_embedding(data_of<float>(o), weight_of(tab), side, grid_h, grid_w, merge);
        });
    });
}

}  // extern "C"
