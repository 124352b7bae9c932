"""Optimiser steps that run eagerly or inside one compiled, graph-captured function.

A loss is written once, as ``loss_fn(params, *args) -> (loss, aux)``, where ``params`` is None
(eager: the modules' own parameters) or a dict of parameters to substitute (``call``). Eagerly,
``AdamStep.eager`` runs backward and PyTorch's fused Adam. Compiled, ``AdamStep.functional`` takes
the gradients with ``torch.func.grad_and_value`` and applies Adam with foreach ops on the same
optimiser's state tensors: ``loss.backward()`` and ``torch.optim`` always break a
``torch.compile`` graph (the optimiser wrapper calls ``graph_break`` on purpose), so a
``fullgraph=True`` update has to take its gradients functionally. Both paths keep the
optimiser's ``state_dict`` in PyTorch's layout, so a checkpoint resumes under either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad_and_value

from accelerl.errors import ConfigError

LossFn = Callable[..., tuple[torch.Tensor, Any]]


def call(module: nn.Module, params: dict[str, torch.Tensor] | None, *args, **kwargs):
    """``module(*args, **kwargs)``, with ``params`` substituted for its parameters when given."""
    if params is None:
        return module(*args, **kwargs)
    return functional_call(module, params, args, kwargs)


class AdamStep:
    """Adam on the parameters ``named`` (name -> tensor; names as ``call`` substitutes them)."""

    def __init__(self, named: dict[str, torch.Tensor], lr: float) -> None:
        self.names = list(named)
        self.params = list(named.values())
        self.opt = torch.optim.Adam(self.params, lr=lr, fused=True)

    @classmethod
    def of(cls, module: nn.Module, lr: float, exclude: nn.Module | None = None) -> AdamStep:
        """Adam on ``module``'s trainable parameters, less those of ``exclude`` (a CNN actor reads its
        critic's encoder but must not train it: the critic's optimiser does)."""
        theirs = {id(p) for p in exclude.parameters()} if exclude is not None else set()
        return cls({n: p for n, p in module.named_parameters() if p.requires_grad and id(p) not in theirs}, lr)

    def eager(self, loss_fn: LossFn, *args) -> tuple[torch.Tensor, Any]:
        loss, aux = loss_fn(None, *args)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach(), aux

    def functional(self, loss_fn: LossFn, *args) -> tuple[torch.Tensor, Any]:
        """The same step with no backward() and no optimiser call: traceable as one graph."""
        grads, (loss, aux) = grad_and_value(lambda p: loss_fn(p, *args), has_aux=True)(
            dict(zip(self.names, self.params, strict=True)))
        self._adam([grads[n] for n in self.names])
        return loss.detach(), aux

    def prepare(self) -> None:
        """Create the optimiser state the first step would create (a compiled step must find it)."""
        for p in self.params:
            state = self.opt.state[p]
            if not state:
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        mark_static([t for p in self.params for t in self.opt.state[p].values()])

    @torch.no_grad()
    def _adam(self, grads: list[torch.Tensor]) -> None:
        """torch.optim.Adam's update (no weight decay, no amsgrad), on its own state tensors."""
        group = self.opt.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        states = [self.opt.state[p] for p in self.params]
        steps = [s["step"] for s in states]
        exp_avg, exp_avg_sq = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        torch._foreach_add_(steps, 1.0)
        torch._foreach_lerp_(exp_avg, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sq, beta2)
        torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1.0 - beta2)
        step = steps[0]  # every parameter of the group steps together
        step_size = lr / (1.0 - beta1**step)
        denom = torch._foreach_sqrt(exp_avg_sq)
        torch._foreach_div_(denom, torch.sqrt(1.0 - beta2**step))
        torch._foreach_add_(denom, eps)
        update = torch._foreach_div(exp_avg, denom)
        torch._foreach_mul_(update, -step_size)
        torch._foreach_add_(self.params, update)

    def state_dict(self) -> dict:
        return self.opt.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state)


def mark_static(tensors: list[torch.Tensor]) -> None:
    """CUDA graphs replay fixed addresses: tensors a captured step updates in place (optimiser
    state, target networks) are marked as such, or the capture is skipped for input mutation."""
    for t in tensors:
        if t.is_cuda:
            torch._dynamo.mark_static_address(t)


def resolve_compile(mode: str, device: torch.device) -> bool:
    """``--compile auto`` compiles where CUDA is used: on CPU the speed table shows no gain."""
    return device.type == "cuda" if mode == "auto" else mode == "on"


def compile_step(fn: Callable, device: torch.device, prepare: Callable[[], None] | None = None) -> Callable:
    """``fn`` as one graph (``fullgraph=True``: a graph break would be a hidden host sync), captured
    as CUDA graphs on CUDA (``reduce-overhead``). The first call runs ``prepare`` (create and mark
    the state the graph updates in place: after any checkpoint was loaded) and compiles; a
    configuration that cannot be traced ends there as one ConfigError line, not a long traceback."""
    mode = "reduce-overhead" if device.type == "cuda" else None
    torch._dynamo.config.allow_rnn = True  # nn.LSTM modules are traced (LSTMEncoder unrolls its recurrence)
    # Every agent (stage 1, stage 2, the distiller; several runs in one process in benchmarks and
    # tests) traces the same code objects with its own modules: each is one more cache entry.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)
    torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit, 4096)
    compiled = torch.compile(fn, fullgraph=True, mode=mode, backend=COMPILE_BACKEND)
    first = True

    def run(*args):
        nonlocal first
        if not first:
            return compiled(*args)
        if prepare is not None:
            prepare()
        try:
            out = compiled(*args)
        except (torch._dynamo.exc.Unsupported, torch._dynamo.exc.TorchRuntimeError,
                torch._dynamo.exc.BackendCompilerFailed) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            name = getattr(getattr(fn, "func", fn), "__name__", "an update")  # a functools.partial's function
            raise ConfigError(f"--compile on: {name} of this configuration cannot be "
                              f"compiled ({reason}); use --compile off") from None
        first = False
        return out

    return run


# The compiler backend: "inductor" generates kernels; the tests swap in "aot_eager", which traces
# the same graph (so graph breaks and wrong results still show) without minutes of C++ builds.
COMPILE_BACKEND = "inductor"
