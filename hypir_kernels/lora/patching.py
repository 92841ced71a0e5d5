"""peft integration: :func:`patch_peft` routes peft ``lora.Linear`` / ``lora.Conv2d`` layers through
our ops (parameters and state dict untouched); :func:`merge` / :func:`unmerge` fold the adapter into
the base weight for inference and restore it bit for bit."""
from __future__ import annotations

import types

import torch

from .common import effective_weight
from .conv import _lora_conv2d, lora_conv2d
from .cost import STRATEGIES
from .linear import _lora_linear, lora_linear


def _peft_lora_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    from peft.tuners.lora import layer as peft_lora

    kinds = tuple(k for k in (getattr(peft_lora, "Linear", None), getattr(peft_lora, "Conv2d", None)) if k is not None)
    return [(name, m) for name, m in model.named_modules() if isinstance(m, kinds)]


def _single_adapter(module) -> str | None:
    active = [a for a in module.active_adapters if a in module.lora_A]
    return active[0] if len(active) == 1 else None


def _fusable(module) -> str | None:
    """The active adapter if ``module``'s LoRA can run through our ops, else None (the layer then
    keeps peft's own forward): one active adapter, vanilla LoRA (no DoRA, no LoRA bias, no
    variant), one dtype, and for conv the base's geometry on lora_A with groups 1."""
    adapter = _single_adapter(module)
    if adapter is None or module.use_dora.get(adapter, False) or getattr(module, "lora_bias", {}).get(adapter, False):
        return None
    if adapter in getattr(module, "lora_variant", {}):
        return None
    base = module.get_base_layer()
    A, B = module.lora_A[adapter], module.lora_B[adapter]
    if not (base.weight.dtype == A.weight.dtype == B.weight.dtype):
        return None
    if isinstance(base, torch.nn.Conv2d):
        if base.groups != 1 or base.padding_mode != "zeros" or isinstance(base.padding, str):
            return None
        if (A.stride, A.padding, A.dilation) != (base.stride, base.padding, base.dilation) or A.groups != 1 or B.groups != 1:
            return None
    elif not isinstance(base, torch.nn.Linear):
        return None
    return adapter


def _hk_plan(module):
    """``(adapter, base, A, B, dropout)`` if the layer's LoRA runs through our ops, else None;
    cached on the module and recomputed when what :func:`_fusable` reads changes (active adapters,
    dtypes, the parameter objects), so a call does not pay for the ModuleDict look-ups."""
    key = (tuple(module.active_adapters), module.disable_adapters, module.merged)
    cached = module.__dict__.get("_hk_plan_cache")
    if cached is not None and cached[0] == key:
        plan = cached[1]
        if plan is None or (plan[2].dtype == plan[3].dtype == plan[1].weight.dtype):
            return plan
    plan = None
    if not (key[1] or key[2]):
        adapter = _fusable(module)
        if adapter is not None:
            plan = (adapter, module.get_base_layer(), module.lora_A[adapter].weight, module.lora_B[adapter].weight,
                    module.lora_dropout[adapter])
    module.__dict__["_hk_plan_cache"] = (key, plan)
    return plan


def _hk_forward(self, x, *args, **kwargs):
    """Forward installed on patched/merged peft LoRA layers."""
    if self.__dict__.get("_hk_merged", False):
        return self.get_base_layer()(x, *args, **kwargs)
    plan = None if (args or kwargs) else _hk_plan(self)
    if plan is None:
        return type(self).forward(self, x, *args, **kwargs)
    adapter, base, A, B, dropout = plan
    scale = float(self.scaling[adapter])  # read per call: peft's set_scale changes it
    p = float(dropout.p) if isinstance(dropout, torch.nn.Dropout) and dropout.training else 0.0
    strategy = self.__dict__.get("_hk_strategy", "auto")
    if isinstance(base, torch.nn.Linear):
        w = base.weight
        if not (isinstance(x, torch.Tensor) and x.dtype == w.dtype and x.device == w.device and x.dim() >= 1
                and x.shape[-1] == w.shape[1]):  # the layer itself is consistent (_fusable); x is not checked yet
            return lora_linear(x, w, base.bias, A, B, scale, p, strategy)  # raises the precise error
        return _lora_linear(x, w, base.bias, A, B, scale, p, strategy, None)
    w = base.weight
    if not (isinstance(x, torch.Tensor) and x.dtype == w.dtype and x.device == w.device and x.dim() == 4
            and x.shape[1] == w.shape[1]):
        return lora_conv2d(x, w, base.bias, A, B, scale, base.stride, base.padding, base.dilation, 1, p, strategy)
    return _lora_conv2d(x, w, base.bias, A, B, scale, list(base.stride), list(base.padding), list(base.dilation), p,
                        strategy, None)  # the layer's geometry was checked by _fusable


def _install(module) -> None:
    module.forward = types.MethodType(_hk_forward, module)


def _uninstall_if_idle(module) -> None:
    if not getattr(module, "_hk_patched", False) and not getattr(module, "_hk_merged", False) and "forward" in module.__dict__:
        del module.forward


def patch_peft(model: torch.nn.Module, strategy: str = "auto") -> list[str]:
    """Run every peft ``lora.Linear`` / ``lora.Conv2d`` of ``model`` through :func:`lora_linear` /
    :func:`lora_conv2d`. Parameters, state-dict keys and the optimizer's view are untouched.

    Layers our ops cannot express (several active adapters, DoRA, LoRA bias, mixed dtypes, conv
    geometry lora_A does not share) keep peft's forward at call time. Returns the patched names.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: expected one of {STRATEGIES}, got {strategy!r}")
    names = []
    for name, module in _peft_lora_layers(model):
        module._hk_patched = True
        module._hk_strategy = strategy
        _install(module)
        names.append(name)
    return names


def unpatch_peft(model: torch.nn.Module) -> None:
    """Undo :func:`patch_peft` (merged layers stay merged until :func:`unmerge`)."""
    for _, module in _peft_lora_layers(model):
        module._hk_patched = False
        _uninstall_if_idle(module)


@torch.no_grad()
def merge(model: torch.nn.Module) -> list[str]:
    """Merge the active adapter into each base weight for inference: ``W + s B A`` accumulated in
    fp32, then cast once. The original weight tensor is kept, so :func:`unmerge` is bit-exact.
    Merged layers run only the base layer. Returns the merged layer names."""
    names = []
    for name, module in _peft_lora_layers(model):
        if getattr(module, "_hk_merged", False):
            continue
        adapter = _single_adapter(module)
        if adapter is None or module.use_dora.get(adapter, False) or getattr(module, "lora_bias", {}).get(adapter, False):
            raise ValueError(f"model: layer {name!r} has no single vanilla LoRA adapter active; cannot merge it exactly")
        if module.merged:
            raise ValueError(f"model: layer {name!r} is already merged by peft")
        base = module.get_base_layer()
        A, B = module.lora_A[adapter].weight, module.lora_B[adapter].weight
        module._hk_unmerged_weight = base.weight.data
        base.weight.data = effective_weight(base.weight.data, A.to(base.weight.dtype), B.to(base.weight.dtype),
                                             float(module.scaling[adapter]))
        module._hk_merged = True
        _install(module)
        names.append(name)
    return names


@torch.no_grad()
def unmerge(model: torch.nn.Module) -> list[str]:
    """Restore the weights :func:`merge` replaced (the original tensors, bit for bit)."""
    names = []
    for name, module in _peft_lora_layers(model):
        if not getattr(module, "_hk_merged", False):
            continue
        module.get_base_layer().weight.data = module._hk_unmerged_weight
        del module._hk_unmerged_weight
        module._hk_merged = False
        _uninstall_if_idle(module)
        names.append(name)
    return names
