"""hypir_kernels.lora: fused LoRA ops against peft (single layers and a tiny SD-style UNet with
HYPIR's target modules), the Triton kernels under the interpreter (incl. in-kernel dropout), the
cost model's choices, exact merge/unmerge, saved tensors, and bad input."""
import pytest
import torch
import torch.nn.functional as F

import hypir_kernels as hk
from hypir_kernels import lora, use_backend
from hypir_kernels.testing import runnable_backends

peft = pytest.importorskip("peft")

TRITON = "triton" in runnable_backends("lora_linear_activation")
needs_triton = pytest.mark.skipif(not TRITON, reason="triton backend not runnable here")
RANKS = (1, 4, 16, 64, 256)
TOL = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.bfloat16: dict(rtol=3e-2, atol=3e-2), torch.float16: dict(rtol=5e-3, atol=5e-3)}


class Net(torch.nn.Module):
    """One linear (50 -> 90, sizes off every block) and one 3x3 conv (6 -> 10, stride 2)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(50, 90)
        self.conv = torch.nn.Conv2d(6, 10, 3, stride=2, padding=1)


def _peft_net(rank, dtype=torch.float32, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    config = peft.LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=dropout, init_lora_weights="gaussian", target_modules=["fc", "conv"])
    net = peft.inject_adapter_in_model(config, Net())
    with torch.no_grad():  # gaussian init leaves B = 0; make the LoRA branch matter
        for name, p in net.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    return net.to(dtype)


def _run(net, kind, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(3, 7, 50, generator=g) if kind == "fc" else torch.randn(2, 6, 9, 11, generator=g)).to(dtype).requires_grad_()
    layer = getattr(net, kind)
    out = layer(x)
    out.backward(torch.randn(out.shape, generator=g).to(dtype))
    grads = {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
    for p in layer.parameters():
        p.grad = None
    return out.detach(), x.grad, grads


def _compare(ours, theirs, dtype):
    torch.testing.assert_close(ours[0], theirs[0], **TOL[dtype])
    torch.testing.assert_close(ours[1], theirs[1], **TOL[dtype])
    assert ours[2].keys() == theirs[2].keys() and any("lora_A" in k for k in theirs[2]) and not any("base_layer" in k for k in ours[2])
    for k in theirs[2]:
        torch.testing.assert_close(ours[2][k], theirs[2][k], **TOL[dtype], msg=k)


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("strategy", ["activation", "weight"])
@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_patched_layer_matches_peft(kind, strategy, rank):
    net = _peft_net(rank)
    expected = _run(net, kind, torch.float32)
    assert lora.patch_peft(net, strategy) == ["fc", "conv"]
    _compare(_run(net, kind, torch.float32), expected, torch.float32)
    lora.unpatch_peft(net)
    assert "forward" not in net.fc.__dict__


def _rel_err(a, b):
    return ((a.double() - b).abs().max() / b.abs().max()).item()


def _compare_16bit(ours, theirs, exact):
    """16-bit: our error vs float64 at most 2x peft's (both round differently; neither is the truth)."""
    pairs = [(ours[0], theirs[0], exact[0], "out"), (ours[1], theirs[1], exact[1], "dx")]
    pairs += [(ours[2][k], theirs[2][k], exact[2][k], k) for k in exact[2]]
    for a, b, ref, name in pairs:
        assert a.dtype == b.dtype
        assert _rel_err(a, ref) <= 2 * _rel_err(b, ref) + 1e-4, (name, _rel_err(a, ref), _rel_err(b, ref))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("strategy", ["activation", "weight"])
@pytest.mark.parametrize("kind", ["fc", "conv"])
def test_patched_layer_16bit(kind, strategy, dtype):
    if dtype == torch.float16 and kind == "conv":
        pytest.skip("CPU conv2d has no float16 kernel")
    exact = _run(_peft_net(16, torch.float64), kind, torch.float64)
    net = _peft_net(16, dtype)
    expected = _run(net, kind, dtype)
    lora.patch_peft(net, strategy)
    _compare_16bit(_run(net, kind, dtype), expected, exact)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("rank", RANKS)
def test_triton_activation_matches_peft(rank, dtype):
    net = _peft_net(rank, dtype)
    expected = _run(net, "fc", dtype)
    lora.patch_peft(net, "activation")
    with use_backend("triton"):
        ours = _run(net, "fc", dtype)
    if dtype == torch.float32:
        _compare(ours, expected, dtype)
    else:
        _compare_16bit(ours, expected, _run(_peft_net(rank, torch.float64), "fc", torch.float64))


def _keep_pattern(n, features, p, seed, backend):
    """The dropout keep pattern of the LoRA branch: with W = 0, A = B = I, x = 1, scale 1 the op
    returns mask / (1 - p)."""
    eye = torch.eye(features)
    with use_backend(backend):
        y = hk.lora_linear(torch.ones(n, features), torch.zeros(features, features), None, eye, eye, 1.0, p, "activation", seed)
    assert all(v == 0 or abs(v - 1 / (1 - p)) < 1e-6 for v in torch.unique(y).tolist())  # 0 or 1/(1-p), nothing else
    return y != 0


@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=needs_triton)])
def test_dropout_rate_and_seed_determinism(backend):
    p = 0.3
    keep = _keep_pattern(200, 48, p, seed=123, backend=backend)
    rate = keep.float().mean().item()
    assert abs(rate - (1 - p)) < 4 * (p * (1 - p) / keep.numel()) ** 0.5  # within 4 sigma
    assert torch.equal(keep, _keep_pattern(200, 48, p, seed=123, backend=backend))
    assert not torch.equal(keep, _keep_pattern(200, 48, p, seed=124, backend=backend))
    # rows and columns are not all alike (the mask is per element, not per token or feature)
    assert keep.float().mean(0).std() > 0 and keep.float().mean(1).std() > 0


@pytest.mark.parametrize("backend", ["reference", pytest.param("triton", marks=needs_triton)])
def test_dropout_gradients_use_the_forward_mask(backend):
    p, seed, n, fin, fout, r = 0.25, 7, 40, 48, 30, 8
    keep = _keep_pattern(n, fin, p, seed, backend).float() / (1 - p)
    g = torch.Generator().manual_seed(0)
    x, W, b = torch.randn(n, fin, generator=g), torch.randn(fout, fin, generator=g), torch.randn(fout, generator=g)
    A, B = torch.randn(r, fin, generator=g), torch.randn(fout, r, generator=g)
    go = torch.randn(n, fout, generator=g)
    leaves = [t.clone().requires_grad_() for t in (x, A, B)]
    with use_backend(backend):
        y = hk.lora_linear(leaves[0], W, b, leaves[1], leaves[2], 0.5, p, "activation", seed)
    y.backward(go)
    ref = [t.clone().requires_grad_() for t in (x, A, B)]
    y_ref = ref[0] @ W.t() + b + 0.5 * ((ref[0] * keep) @ ref[1].t()) @ ref[2].t()
    y_ref.backward(go)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(leaves, ref):
        torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-5, atol=1e-5)


# SD2.1 UNet layer types HYPIR targets (DESIGN §5) on a tiny UNet: linear projections (SD2 uses
# linear proj_in/proj_out), attention, GEGLU feed-forward, resnet convs, shortcut, down/up
# sampler convs and conv_out.
HYPIR_TARGETS = ["to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
                 "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]


def _tiny_unet(rank):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=(1, 2), norm_num_groups=8, use_linear_projection=True,
    )
    config = peft.LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=HYPIR_TARGETS)
    unet = peft.inject_adapter_in_model(config, unet)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return unet


def _unet_step(unet):
    g = torch.Generator().manual_seed(3)
    x, t, ctx = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([5, 900]), torch.randn(2, 7, 32, generator=g)
    out = unet(x, t, ctx).sample
    out.square().mean().backward()
    grads = {n: p.grad.clone() for n, p in unet.named_parameters() if p.grad is not None}
    unet.zero_grad(set_to_none=True)
    return out.detach(), grads


@pytest.mark.parametrize("strategy", ["auto", "activation", "weight"])
def test_tiny_unet_with_hypir_targets(strategy):
    unet = _tiny_unet(rank=8)
    expected = _unet_step(unet)
    names = lora.patch_peft(unet, strategy)
    kinds = {n.rsplit(".", 1)[-1] for n in names}
    assert {"conv", "conv1", "conv2", "conv_shortcut", "conv_out", "to_q", "proj_in", "proj_out", "2"} <= kinds
    out, grads = _unet_step(unet)
    torch.testing.assert_close(out, expected[0], rtol=1e-4, atol=1e-5)
    assert grads.keys() == expected[1].keys() and all("lora_" in k for k in grads)
    for k in grads:
        torch.testing.assert_close(grads[k], expected[1][k], rtol=1e-4, atol=1e-6, msg=k)


def test_merge_is_exact_and_unmerge_restores_bits():
    unet = _tiny_unet(rank=8).to(torch.bfloat16)
    originals = {n: p.detach().clone() for n, p in unet.named_parameters()}
    g = torch.Generator().manual_seed(3)
    args = (torch.randn(1, 4, 8, 8, generator=g).bfloat16(), torch.tensor([5]), torch.randn(1, 7, 32, generator=g).bfloat16())
    with torch.no_grad():
        unmerged_out = unet(*args).sample
    merged = lora.merge(unet)
    assert merged
    layer = dict(unet.named_modules())[merged[0]]
    base = layer.get_base_layer()
    adapter = layer.active_adapters[0]
    A, B = layer.lora_A[adapter].weight.float(), layer.lora_B[adapter].weight.float()
    expected_w = (originals[merged[0] + ".base_layer.weight"].float()
                  + layer.scaling[adapter] * (B.reshape(B.shape[0], -1) @ A.reshape(A.shape[0], -1)).reshape(base.weight.shape)).bfloat16()
    assert torch.equal(base.weight, expected_w)  # fp32 accumulation, one rounding
    with torch.no_grad():
        for name, p in unet.named_parameters():  # merged layers no longer read the LoRA weights
            if "lora_B" in name:
                p.fill_(float("nan"))
        merged_out = unet(*args).sample
    assert torch.isfinite(merged_out).all()
    torch.testing.assert_close(merged_out, unmerged_out, rtol=3e-2, atol=3e-2)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.copy_(originals[name])
    assert lora.unmerge(unet) == merged
    for name, p in unet.named_parameters():
        assert torch.equal(p, originals[name]), name
    assert all("forward" not in m.__dict__ for _, m in lora.patching._peft_lora_layers(unet))


def _saved_bytes(fn):
    """Bytes of non-parameter tensors autograd saves while ``fn`` runs."""
    params = set()
    total = []

    def pack(t):
        if t.data_ptr() not in params:
            total.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(params)
    return out, sum(total)


def test_weight_strategy_saves_no_rank_r_activation():
    x = torch.randn(64, 40, requires_grad=True)
    W, A, B = torch.randn(30, 40), torch.randn(16, 40, requires_grad=True), torch.randn(30, 16, requires_grad=True)

    def call(strategy):
        def fn(params):
            params.update(t.data_ptr() for t in (W, A, B))
            return hk.lora_linear(x, W, None, A, B, 1.0, strategy=strategy)
        return _saved_bytes(fn)[1]

    assert call("weight") == x.numel() * 4  # x only
    assert call("activation") == (x.numel() + 64 * 16) * 4  # x and h


def test_auto_choices_on_known_shapes():
    # SD2.1 at 256 px, rank 256, fp32 CPU training: level-1 layers (1024 tokens, 320 ch) take
    # the weight strategy, level-3 (64 tokens, 1280 ch) and cross-attn k/v (77 tokens) activation.
    assert lora.choose_strategy(1024, 320, 320, 256) == "weight"
    assert lora.choose_strategy(64, 1280, 1280, 256) == "activation"
    assert lora.choose_strategy(77, 1024, 320, 256) == "activation"
    # 3x3 conv at 1024 pixels: on the CPU oneDNN's convolutions make the activation path cheaper
    assert lora.choose_strategy(1024, 320, 320, 256, taps=9) == "activation"
    assert lora.choose_strategy(4096, 320, 320, 256, taps=9) == "weight"  # 512 px: N large enough
    assert lora.choose_strategy(1024, 320, 320, 256, taps=1) == "weight"  # 1x1 conv = linear
    assert lora.choose_strategy(1024, 320, 320, 4) == "activation"  # low rank
    assert lora.choose_strategy(1024, 320, 320, 256, dropout_p=0.1) == "activation"
    assert lora.choose_strategy(1024, 320, 320, 256, training=False) == "weight"  # inference: weight is N-free
    assert lora.choose_strategy(64, 1280, 1280, 256, training=False) == "activation"
    costs = lora.strategy_costs(1024, 320, 320, 256)
    assert costs["weight"] < costs["activation"]


def test_torch_compile_fullgraph():
    x = torch.randn(5, 24)
    W, A, B = torch.randn(20, 24), torch.randn(4, 24, requires_grad=True), torch.randn(20, 4, requires_grad=True)
    for strategy in ("activation", "weight"):
        def f(x, A, B, strategy=strategy):
            return hk.lora_linear(x, W, None, A, B, 0.5, strategy=strategy)
        torch.testing.assert_close(torch.compile(f, fullgraph=True, backend="aot_eager")(x, A, B), f(x, A, B))


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_autocast_casts_the_operands_as_for_torch_layers(kind):
    """Under CPU bf16 autocast with fp32 layers (mixed-precision training): bf16 output equal to the
    same arithmetic on bf16-cast operands, fp32 gradients for the fp32 adapter weights."""
    torch.manual_seed(0)
    if kind == "linear":
        x, W, b = torch.randn(5, 24), torch.randn(20, 24), torch.randn(20)
        A, B = torch.randn(4, 24, requires_grad=True), torch.randn(20, 4, requires_grad=True)
        call = lambda x, W, b, A, B: hk.lora_linear(x, W, b, A, B, 0.5)  # noqa: E731
    else:
        x, W, b = torch.randn(2, 6, 7, 7), torch.randn(8, 6, 3, 3), torch.randn(8)
        A, B = torch.randn(4, 6, 3, 3, requires_grad=True), torch.randn(8, 4, 1, 1, requires_grad=True)
        call = lambda x, W, b, A, B: hk.lora_conv2d(x, W, b, A, B, 0.5, padding=1)  # noqa: E731
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = call(x, W, b, A, B)
    assert y.dtype == torch.bfloat16
    gA, gB = torch.autograd.grad(y.float().square().sum(), (A, B))
    assert gA.dtype == gB.dtype == torch.float32
    bf = [t.detach().bfloat16().requires_grad_(t.requires_grad) for t in (x, W, b, A, B)]
    expected = call(*bf)

    def close(a, e):  # bf16 results: a couple of ulps of the largest value (the paths may round apart)
        torch.testing.assert_close(a.float(), e.float(), rtol=1.6e-2, atol=1.6e-2 * e.abs().max().item())

    close(y, expected)
    eA, eB = torch.autograd.grad(expected.float().square().sum(), (bf[3], bf[4]))
    close(gA, eA)
    close(gB, eB)


def _linear_args(**over):
    args = dict(x=torch.zeros(3, 8), weight=torch.zeros(6, 8), bias=torch.zeros(6), lora_A=torch.zeros(2, 8),
                lora_B=torch.zeros(6, 2), scale=1.0)
    args.update(over)
    return args


@pytest.mark.parametrize(
    "over,match",
    [
        (dict(lora_B=torch.zeros(6, 3)), "lora_B: rank"),
        (dict(lora_A=torch.zeros(2, 7)), "lora_A: in features"),
        (dict(weight=torch.zeros(6, 8, 1)), "weight: expected 2 dims"),
        (dict(x=torch.zeros(3, 7)), "x: last dim"),
        (dict(lora_A=torch.zeros(2, 8, dtype=torch.float64)), "lora_A: expected the dtype of x"),
        (dict(bias=torch.zeros(5)), "bias: expected shape"),
        (dict(dropout_p=1.0), "dropout_p"),
        (dict(dropout_p=-0.1), "dropout_p"),
        (dict(strategy="fast"), "strategy"),
        (dict(strategy="weight", dropout_p=0.1), "strategy: 'weight' cannot apply dropout"),
        (dict(x=torch.zeros(3, 8, dtype=torch.int64)), "x: expected dtype"),
        (dict(lora_A=torch.zeros(0, 8), lora_B=torch.zeros(6, 0)), "lora_A: rank \\(dim 0\\) must be >= 1"),
        (dict(scale=1e39), "scale: 1e\\+39 overflows torch.float32"),
        (dict(seed=[1]), "seed: expected an int"),  # was a TypeError from int()
        (dict(seed=2**64), "seed: expected an int in"),
    ],
)
def test_bad_linear_input(over, match):
    with pytest.raises(ValueError, match=match):
        hk.lora_linear(**_linear_args(**over))


@pytest.mark.parametrize(
    "over,match",
    [
        (dict(lora_B=torch.zeros(6, 2, 3, 3)), "lora_B: expected a 1x1 kernel"),
        (dict(lora_A=torch.zeros(2, 4, 1, 1)), "lora_A: expected shape"),
        (dict(groups=2), "groups"),
        (dict(stride=(1, 2, 3)), "stride"),
        (dict(x=torch.zeros(1, 5, 8, 8)), "x: channels"),
        # F.conv2d rejects zero out channels, returns a wrong shape for zero in channels, and
        # runs no convolution over an empty plane: ours answers with a ValueError instead.
        (dict(weight=torch.zeros(0, 4, 3, 3), lora_B=torch.zeros(0, 2, 1, 1)), "weight: out and in channels"),
        (dict(x=torch.zeros(1, 0, 8, 8), weight=torch.zeros(6, 0, 3, 3), lora_A=torch.zeros(2, 0, 3, 3)), "weight: out and in"),
        (dict(x=torch.zeros(1, 4, 0, 8), padding=1), "x: height and width must be >= 1"),
        (dict(x=torch.zeros(1, 4, 2, 8)), "x: padded height 2"),
        (dict(stride=2**63), "stride: expected <="),  # overflowed inside F.conv2d's argument parser
        (dict(x=torch.zeros(1, 4, 8, 8, dtype=torch.float16), weight=torch.zeros(6, 4, 3, 3, dtype=torch.float16),
              lora_A=torch.zeros(2, 4, 3, 3, dtype=torch.float16), lora_B=torch.zeros(6, 2, 1, 1, dtype=torch.float16),
              scale=1e5), "scale: 100000.0 overflows torch.float16"),
    ],
)
def test_bad_conv_input(over, match):
    args = dict(x=torch.zeros(1, 4, 8, 8), weight=torch.zeros(6, 4, 3, 3), bias=None, lora_A=torch.zeros(2, 4, 3, 3),
                lora_B=torch.zeros(6, 2, 1, 1), scale=1.0)
    args.update(over)
    with pytest.raises(ValueError, match=match):
        hk.lora_conv2d(**args)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("rank", RANKS)
def test_cuda_triton_activation_matches_peft(rank, dtype):
    net = _peft_net(rank, dtype).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(4, 333, 50, device="cuda", generator=g).to(dtype)

    def run():
        leaf = x.clone().requires_grad_()
        out = net.fc(leaf)
        out.float().square().mean().backward()
        grads = [leaf.grad] + [p.grad.clone() for n, p in net.fc.named_parameters() if "lora_" in n]
        net.zero_grad(set_to_none=True)
        return [out.detach()] + grads

    expected = run()
    lora.patch_peft(net, "activation")
    assert lora.patching._fusable(net.fc) is not None
    for a, b in zip(run(), expected):
        torch.testing.assert_close(a, b, **TOL[dtype])


@pytest.mark.parametrize("edit, name", [
    (lambda x, w, b, A, B: (x[:, :3], w, b, A, B), "x"),
    (lambda x, w, b, A, B: (x, w, b, A[:, :3], B), "lora_A"),
    (lambda x, w, b, A, B: (x, w, b, A, B[:, :2]), "lora_B"),
    (lambda x, w, b, A, B: (x, w, b[:2], A, B), "bias"),
    (lambda x, w, b, A, B: (x[None], w, b, A, B), "x"),
])
def test_activation_ops_check_their_own_arguments(edit, name):
    """The library ops are public: inconsistent shapes raise ValueError naming the argument."""
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(6, 5, generator=g), torch.randn(4, 5, generator=g), torch.randn(4, generator=g)
    A, B = torch.randn(3, 5, generator=g), torch.randn(4, 3, generator=g)
    args = edit(x, w, b, A, B)
    with pytest.raises(ValueError, match=f"^{name}:"):
        torch.ops.hypir_kernels.lora_linear_activation(*args, 1.0, 0.0, 0)
    x, w, _, A, B = args
    dy, h = torch.randn(6, 4, generator=g), torch.randn(6, 3, generator=g)
    if name != "bias":
        with pytest.raises(ValueError, match=f"^{name}:"):
            torch.ops.hypir_kernels.lora_linear_activation_backward(dy, x, h, w, A, B, 1.0, 0.0, 0, "reference")


def test_activation_backward_op_checks_saved_tensors_and_backend():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(6, 5, generator=g), torch.randn(4, 5, generator=g)
    A, B = torch.randn(3, 5, generator=g), torch.randn(4, 3, generator=g)
    dy, h = torch.randn(6, 4, generator=g), torch.randn(6, 3, generator=g)
    op = torch.ops.hypir_kernels.lora_linear_activation_backward
    with pytest.raises(ValueError, match="^dy:"):
        op(dy[:5], x, h, w, A, B, 1.0, 0.0, 0, "reference")
    with pytest.raises(ValueError, match="^h:"):
        op(dy, x, h[:, :2], w, A, B, 1.0, 0.0, 0, "reference")
    with pytest.raises(ValueError, match="^forward_backend:"):
        op(dy, x, h, w, A, B, 1.0, 0.0, 0, "nope")
    dx, dA, dB = op(dy, x, h, w, A, B, 1.0, 0.0, 0, "reference")
    assert dx.shape == x.shape and dA.shape == A.shape and dB.shape == B.shape


@pytest.mark.parametrize("kwargs, name", [({"stride": 0}, "stride"), ({"dilation": (1, 0)}, "dilation"),
                                          ({"padding": -1}, "padding"), ({"stride": (1,)}, "stride")])
def test_conv_geometry_is_checked(kwargs, name):
    x, w, A, B = torch.rand(1, 2, 5, 5), torch.rand(3, 2, 3, 3), torch.rand(4, 2, 3, 3), torch.rand(3, 4, 1, 1)
    with pytest.raises(ValueError, match=f"^{name}:"):
        hk.lora_conv2d(x, w, None, A, B, 1.0, **kwargs)


def test_weight_and_conv_ops_check_their_own_arguments():
    """Every LoRA library op is public: inconsistent shapes or geometry raise ValueError naming the
    argument (they reached F.linear / F.conv2d with a RuntimeError before)."""
    ops = torch.ops.hypir_kernels
    with pytest.raises(ValueError, match="^x:"):
        ops.lora_linear_weight(torch.rand(4, 3), torch.rand(5, 4), None, torch.rand(2, 4), torch.rand(5, 2), 1.0)
    x, w, A, B = torch.rand(1, 2, 5, 5), torch.rand(4, 2, 3, 3), torch.rand(2, 2, 3, 3), torch.rand(4, 2, 1, 1)
    g = ([1, 1], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="^x:"):
        ops.lora_conv2d_activation(torch.rand(1, 3, 5, 5), w, None, A, B, 1.0, *g, 0.0, 0)
    with pytest.raises(ValueError, match="^lora_B:"):
        ops.lora_conv2d_weight(x, w, None, A, torch.rand(4, 3, 1, 1), 1.0, *g)
    with pytest.raises(ValueError, match="^stride:"):
        ops.lora_conv2d_weight(x, w, None, A, B, 1.0, [0, 1], [1, 1], [1, 1])
    assert ops.lora_conv2d_weight(x, w, None, A, B, 1.0, *g).shape == (1, 4, 5, 5)


@pytest.mark.parametrize("strategy", ["activation", "weight"])
def test_empty_linear_dims_work_like_f_linear(strategy):
    """N = 0, in = 0 and out = 0 are valid F.linear shapes; `reshape(-1, ...)` failed on them."""
    for N, fin, fout in ((0, 3, 4), (2, 0, 4), (2, 3, 0), (0, 0, 0)):
        x = torch.rand(N, fin, requires_grad=True)
        w, A, B = torch.rand(fout, fin), torch.rand(2, fin, requires_grad=True), torch.rand(fout, 2, requires_grad=True)
        y = hk.lora_linear(x, w, None, A, B, 0.5, strategy=strategy)
        torch.testing.assert_close(y, F.linear(x, w + 0.5 * B @ A))
        y.sum().backward()
        assert x.grad.shape == x.shape and A.grad.shape == A.shape and B.grad.shape == B.shape
    y = hk.lora_linear(torch.rand(0, 5, 3), torch.rand(4, 3), None, torch.rand(2, 3), torch.rand(4, 2), 1.0, strategy=strategy)
    assert y.shape == (0, 5, 4)


def test_conv_composed_and_function_paths_agree(monkeypatch):
    """Small CPU conv layers (and every GPU one) run as plain autograd ops for host time; large
    CPU layers through the recomputing Function. Both give the same values and gradients."""
    def run():
        torch.manual_seed(0)
        x = torch.randn(2, 4, 9, 7, dtype=torch.float64, requires_grad=True)
        w, b = torch.randn(6, 4, 3, 3, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
        A = torch.randn(3, 4, 3, 3, dtype=torch.float64, requires_grad=True)
        B = torch.randn(6, 3, 1, 1, dtype=torch.float64, requires_grad=True)
        y = hk.lora_conv2d(x, w, b, A, B, 0.7, stride=(2, 1), padding=1, strategy="activation")
        y.backward(torch.randn_like(y))
        return y.detach(), x.grad, A.grad, B.grad

    composed = run()
    monkeypatch.setattr(lora.conv, "_COMPOSED_CONV_MAX_WORK", 0)
    function = run()
    for a, b in zip(composed, function):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
