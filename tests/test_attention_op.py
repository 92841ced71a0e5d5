"""hypir_kernels.attention: Triton kernels (run by the interpreter here, compiled on a GPU) against
a float64 reference, with FlashAttention's tolerance rule: the error of our output and gradients
vs float64 is at most a small multiple of the error of PyTorch's same-dtype math implementation.
"""
import math

import pytest
import torch
import torch.nn.functional as F

import hypir_kernels as hk
from hypir_kernels import use_backend
from hypir_kernels.testing import runnable_backends

pytestmark = pytest.mark.skipif("triton" not in runnable_backends("attention"), reason="triton backend not runnable here")

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# (forward factor, gradient factor) over the error of torch's same-dtype math; the floor covers
# float32 where both errors are at rounding level.
FACTOR = (2.0, 3.0)
FLOOR = {torch.float32: 1e-5, torch.float16: 2e-4, torch.bfloat16: 2e-3}


def _inputs(B, H, SQ, SK, D, dtype, seed=0, layout="bhsd"):
    g = torch.Generator().manual_seed(seed)
    if layout == "bshd":  # diffusers: [B, S, H, D] viewed as [B, H, S, D]
        q = torch.randn(B, SQ, H, D, generator=g).transpose(1, 2)
        k = torch.randn(B, SK, H, D, generator=g).transpose(1, 2)
        v = torch.randn(B, SK, H, D, generator=g).transpose(1, 2)
    else:
        q, k, v = (torch.randn(B, H, S, D, generator=g) for S in (SQ, SK, SK))
    go = torch.randn(B, H, SQ, D, generator=g)
    return [t.to(dtype) for t in (q, k, v, go)]


def _math(q, k, v, go, scale):
    """Plain softmax(q k^T s) v and its gradients, in the inputs' dtype."""
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = torch.softmax((q @ k.transpose(-1, -2)) * scale, dim=-1) @ v
    out.backward(go)
    return out.detach(), q.grad, k.grad, v.grad


def _ours(q, k, v, go, scale=None):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    with use_backend("triton"):
        out = hk.attention(q, k, v, scale)
        out.backward(go)
    return out.detach(), q.grad, k.grad, v.grad


def _max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


def check_against_fp64(q, k, v, go, scale=None):
    D = q.shape[-1]
    s = 1 / math.sqrt(D) if scale is None else scale
    ref = _math(*(t.double() for t in (q, k, v, go)), s)
    same_dtype = _math(q, k, v, go, s)
    ours = _ours(q, k, v, go, scale)
    for i, name in enumerate(("out", "dq", "dk", "dv")):
        assert ours[i].dtype == q.dtype and ours[i].shape == ref[i].shape, name
        err, torch_err = _max_err(ours[i], ref[i]), _max_err(same_dtype[i], ref[i])
        bound = FACTOR[i > 0] * torch_err + FLOOR[q.dtype]
        assert err <= bound, f"{name}: error {err:.2e} > {bound:.2e} (torch {q.dtype} math: {torch_err:.2e})"
    return ours


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("D", hk.HEAD_DIMS)
def test_cross_attention_every_head_dim(D, dtype):
    # Sq and Sk not multiples of any block; Sk = 77 as with CLIP text tokens; B * H > 1.
    check_against_fp64(*_inputs(2, 2, 150, 77, D, dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "B,H,SQ,SK",
    [(1, 2, 70, 1), (1, 1, 1, 77), (2, 1, 33, 200), (1, 3, 129, 129)],
    ids=["Sk=1", "Sq=1", "Sk>Sq,many key blocks", "self,one past a block"],
)
def test_lengths(B, H, SQ, SK, dtype):
    check_against_fp64(*_inputs(B, H, SQ, SK, 64, dtype))


def test_custom_scale():
    q, k, v, go = _inputs(1, 2, 40, 50, 64, torch.float32)
    check_against_fp64(q, k, v, go, scale=0.3)


@pytest.mark.parametrize("dtype", (torch.float16, torch.float32), ids=str)
def test_non_contiguous_views(dtype):
    # diffusers layout (strided heads), a slice with an offset pointer, and a head-dim stride != 1
    q, k, v, go = _inputs(2, 2, 50, 77, 64, dtype, layout="bshd")
    assert not q.is_contiguous()
    wide = torch.randn(2, 2, 80, 64).to(dtype)
    k = wide[:, :, 3:80]  # offset storage
    v_t = torch.randn(2, 2, 64, 77).to(dtype).transpose(-1, -2)  # head-dim stride 77
    assert v_t.stride(-1) != 1
    check_against_fp64(q, k, v_t, go.transpose(1, 2).contiguous().transpose(1, 2))


def test_output_layout_and_lse():
    q, k, v, _ = _inputs(2, 3, 45, 20, 64, torch.float32)
    with use_backend("triton"):
        out, lse = torch.ops.hypir_kernels.attention_forward(q, k, v, 0.125)
    # memory [B, Sq, H, D]: merging heads afterwards is a free view
    assert out.transpose(1, 2).is_contiguous()
    assert lse.dtype == torch.float32 and lse.shape == (2, 3, 45)
    expected = torch.logsumexp((q.double() @ k.double().transpose(-1, -2)) * 0.125, dim=-1)
    torch.testing.assert_close(lse.double(), expected, rtol=1e-6, atol=1e-6)


def test_backward_is_deterministic():
    q, k, v, go = _inputs(1, 2, 150, 130, 64, torch.float16)
    first, second = _ours(q, k, v, go), _ours(q, k, v, go)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_cpu_default_is_sdpa():
    q, k, v, _ = _inputs(2, 2, 30, 7, 40, torch.float32)
    assert hk.backend.select(hk.backend.REGISTRY["attention"], "cpu") == "reference"
    torch.testing.assert_close(hk.attention(q, k, v), F.scaled_dot_product_attention(q, k, v), rtol=0, atol=0)
    torch.testing.assert_close(hk.attention(q, k, v, scale=0.5), F.scaled_dot_product_attention(q, k, v, scale=0.5))


def test_float64_reference_only():
    q, k, v, _ = _inputs(1, 1, 5, 5, 32, torch.float64)
    assert hk.attention(q, k, v).dtype == torch.float64
    with use_backend("triton"), pytest.raises(ValueError, match="q: the triton backend"):
        hk.attention(q, k, v)


def test_torch_compile_fullgraph():
    q, k, v, go = _inputs(1, 2, 20, 9, 32, torch.float32)

    def f(q, k, v):
        return hk.attention(q, k, v).sum()

    with use_backend("triton"):
        expected = f(q, k, v)
        got = torch.compile(f, fullgraph=True, backend="aot_eager")(q, k, v)
    torch.testing.assert_close(got, expected)


def _qkv(q_shape=(1, 2, 8, 64), k_shape=(1, 2, 5, 64), v_shape=None, dtype=torch.float32):
    return torch.zeros(q_shape, dtype=dtype), torch.zeros(k_shape, dtype=dtype), torch.zeros(v_shape or k_shape, dtype=dtype)


@pytest.mark.parametrize(
    "args,match",
    [
        (_qkv(k_shape=(2, 2, 5, 64)), "k: batch"),
        (_qkv(k_shape=(1, 3, 5, 64), v_shape=(1, 3, 5, 64)), "k: heads"),
        (_qkv(v_shape=(1, 2, 5, 32)), "v: head dim"),
        (_qkv(v_shape=(1, 2, 6, 64)), "v: sequence length"),
        (_qkv(q_shape=(1, 2, 8, 48), k_shape=(1, 2, 5, 48)), "q: head dim"),
        (_qkv(k_shape=(1, 2, 0, 64)), "k: needs at least one key"),
        (_qkv(q_shape=(2, 8, 64)), "q: expected 4 dims"),
        (_qkv(dtype=torch.int32), "q: expected dtype"),
        ((torch.zeros(1, 2, 8, 64), torch.zeros(1, 2, 5, 64, dtype=torch.float16), torch.zeros(1, 2, 5, 64)), "k: expected the dtype of q"),
        ((torch.zeros(1, 2, 8, 64), [0.0], torch.zeros(1, 2, 5, 64)), "k: expected a torch.Tensor"),
    ],
)
def test_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        hk.attention(*args)


@pytest.mark.parametrize("scale", [0.0, float("nan"), "0.1", True, 1e39, -1e300])
def test_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        hk.attention(*_qkv(), scale=scale)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16, torch.float32), ids=str)
@pytest.mark.parametrize("D", hk.HEAD_DIMS)
def test_cuda_matches_fp64(D, dtype):
    q, k, v, go = (t.cuda() for t in _inputs(2, 5, 1000, 77, D, dtype))
    check_against_fp64(q, k, v, go)
    q, k, v, go = (t.cuda() for t in _inputs(1, 2, 1024, 1024, D, dtype, layout="bshd"))
    check_against_fp64(q, k, v, go)


def _qkv(B=1, H=2, SQ=5, SK=7, D=32, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(B, H, s, D, generator=g, dtype=dtype) for s in (SQ, SK, SK)]


@pytest.mark.parametrize("edit, name", [
    (lambda q, k, v: (q, k[:, :1], v), "k"),                      # heads differ
    (lambda q, k, v: (q, k, v[:, :, :3]), "v"),                   # Sk of v differs from k's
    (lambda q, k, v: (q[0], k, v), "q"),                          # 3-D
    (lambda q, k, v: (q, k.double(), v), "k"),                    # dtype
    (lambda q, k, v: (q.double(), k.double(), v.double()), "q"),  # float64 is not a triton dtype
])
def test_forward_op_checks_its_own_arguments(edit, name):
    """torch.ops.hypir_kernels.attention_forward is public: inconsistent shapes raise ValueError
    naming the argument instead of reading out of bounds."""
    q, k, v = edit(*_qkv())
    with pytest.raises(ValueError, match=f"^{name}:"):
        torch.ops.hypir_kernels.attention_forward(q, k, v, 0.1)


@pytest.mark.parametrize("edit, name", [
    (lambda g, o, lse: (g[:, :, :3], o, lse), "grad_out"),
    (lambda g, o, lse: (g, o.half(), lse), "out"),
    (lambda g, o, lse: (g, o, lse[:, :, :2]), "lse"),
    (lambda g, o, lse: (g, o, lse.double()), "lse"),
    (lambda g, o, lse: (g, o, lse[0]), "lse"),
])
def test_backward_op_checks_its_own_arguments(edit, name):
    q, k, v = _qkv()
    out = torch.zeros_like(q)
    lse = torch.zeros(q.shape[:3])
    g, out, lse = edit(torch.ones_like(q), out, lse)
    with pytest.raises(ValueError, match=f"^{name}:"):
        torch.ops.hypir_kernels.attention_backward(g, q, k, v, out, lse, 0.1)


# ---- per-call backend choice (issue 10): pinned on SD2.1 shapes ----------------------------------

@pytest.mark.parametrize("cap,dtype,sq,sk,training,expected", [
    ((9, 0), torch.bfloat16, 4096, 4096, False, "sdpa_cudnn"),    # cuDNN won every measured shape >= 4096 tokens
    ((9, 0), torch.bfloat16, 16384, 16384, True, "sdpa_cudnn"),
    ((9, 0), torch.float16, 1024, 1024, True, "sdpa_flash"),
    ((9, 0), torch.bfloat16, 4096, 77, False, "sdpa_efficient"),  # cross-attention to the text tokens
    ((9, 0), torch.bfloat16, 256, 256, True, "sdpa_efficient"),
    ((8, 0), torch.bfloat16, 16384, 16384, False, "sdpa_flash"),  # no cuDNN preference before Hopper
    ((9, 0), torch.float32, 4096, 4096, False, "sdpa_efficient"),  # no flash/cuDNN kernel for fp32
])
def test_auto_choice_on_sd2_shapes(cap, dtype, sq, sk, training, expected):
    assert hk.attention_op.choose_attention_backend("cuda", cap, dtype, 64, sq, sk, training) == expected


def test_auto_never_picks_triton_and_cpu_takes_sdpa():
    choices = {hk.attention_op.choose_attention_backend("cuda", cap, dt, d, s, s2, t)
               for cap in ((8, 0), (8, 9), (9, 0), (10, 0)) for dt in (torch.float16, torch.bfloat16, torch.float32)
               for d in hk.HEAD_DIMS for s in (64, 256, 1024, 4096, 16384) for s2 in (77, 4096) for t in (False, True)}
    assert "triton" not in choices
    q, k, v = _qkv()
    assert hk.attention_backend(q, k) == "sdpa"
    assert hk.info()["attention_auto"]["CPU tensors"] == "sdpa"


@pytest.mark.parametrize("name", ["sdpa", "sdpa_math", "sdpa_efficient", "sdpa_flash", "sdpa_cudnn"])
def test_forced_sdpa_backends_agree_on_cpu(name):
    """Forcing an SDPA kernel the CPU lacks falls through the priority list (math / CPU flash)."""
    q, k, v = (torch.randn(2, 3, 17, 64, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(hk.attention(q, k, v, backend=name), F.scaled_dot_product_attention(q, k, v))
    assert hk.attention_backend(q, k, name) == name


def test_backend_argument_checked_and_triton_forced():
    q, k, v = (torch.randn(1, 2, 8 + 5 * (i > 0), 64) for i in range(3))
    with pytest.raises(ValueError, match="^backend: expected one of"):
        hk.attention(q, k, v, backend="xformers")
    with pytest.raises(ValueError, match="^q: expected a torch.Tensor"):
        hk.attention_backend("q", k)
    ref = F.scaled_dot_product_attention(q, k, v)
    with hk.use_backend("triton"):  # the global forcing still reaches our kernel
        assert hk.attention_backend(q, k) == "triton"
    torch.testing.assert_close(hk.attention(q, k, v, backend="triton"), ref, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("shape", [(4, 0, 3, 32), (0, 2, 3, 32), (2, 2, 0, 32)])
def test_empty_queries_give_empty_outputs_with_gradients(shape):
    """torch 2.11's CPU SDPA died of SIGFPE on zero heads (found by the property test)."""
    q = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    k = torch.randn(shape[0], shape[1], 5, shape[3], dtype=torch.float64, requires_grad=True)
    out = hk.attention(q, k, k)
    assert out.shape == shape
    out.sum().backward()
    assert q.grad.shape == shape and k.grad.shape == k.shape
