"""Several independently initialised copies of one network, trained together and averaged.

:func:`train_members` trains ``M`` members of any architecture with the shared loop of
:mod:`harness.toolkit.train`. Each member has its own initialisation and its own data order: member ``m``
reads the training set through a fixed random bijection ``order[m]`` of the example positions, so
one shared shuffled batch of positions becomes ``M`` different batches (member 0 reads it as is).

Where the architecture allows it, the members are *vectorised*: their weights are stacked
(``torch.func.stack_module_state``) and one ``vmap`` of ``functional_call`` runs all of them in a
single forward and backward pass, optimised by one optimiser over the stacked tensors. That is
exactly ``M`` independent runs for element-wise optimisers (SGD, momentum, Adam, AdamW, RMSprop,
Adagrad). BatchNorm works too: its running statistics are stacked buffers, one set per member.
Models that ``vmap`` cannot trace (some timm blocks) fall back to training the members one after
another with the same step function; the fallback is logged and ``Members.vectorised`` says which
way was taken. In the vectorised mode the best-weights restore of :func:`harness.toolkit.train.train` picks
one epoch for all members (by the ensemble's validation accuracy).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from harness.context import FitContext
from harness.toolkit.train import TrainConfig, autocast, train

Forward = Callable[[torch.Tensor], torch.Tensor]
# step(forward, idx, progress): ``idx`` is ``M × B`` train positions (one row per member),
# ``forward`` maps ``M × B × …`` inputs to ``M × B × K`` logits; return the sum over members of each
# member's mean loss.
MemberStep = Callable[[Forward, torch.Tensor, float], torch.Tensor]


class StackedMembers(nn.Module):
    """``M`` networks of one architecture as stacked parameters and buffers, called through ``vmap``.

    ``forward(x)`` takes ``M × B × …`` (one batch per member) and returns ``M × B × K``;
    ``forward_shared(x)`` runs every member on the same ``B × …`` batch.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        params, buffers = stack_module_state(members)
        self._names = list(params)
        self._buffer_names = list(buffers)
        self.stacked = nn.ParameterList(nn.Parameter(params[n].detach().clone()) for n in self._names)
        for i, n in enumerate(self._buffer_names):
            self.register_buffer(f"buffer{i}", buffers[n].clone())
        # A weightless template for functional_call; kept out of the module tree so .to() skips it.
        self._template = [copy.deepcopy(members[0]).to("meta")]
        self.size = len(members)

    def train(self, mode: bool = True) -> StackedMembers:
        super().train(mode)
        self._template[0].train(mode)
        return self

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        params = dict(zip(self._names, self.stacked))
        buffers = {n: getattr(self, f"buffer{i}") for i, n in enumerate(self._buffer_names)}
        return params, buffers

    def _call(self, params, buffers, x):
        return functional_call(self._template[0], (params, buffers), (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params, buffers = self._state()
        return vmap(self._call, randomness="different")(params, buffers, x)

    def forward_shared(self, x: torch.Tensor) -> torch.Tensor:
        params, buffers = self._state()
        return vmap(self._call, in_dims=(0, 0, None), randomness="different")(params, buffers, x)


class Members:
    """A fitted ensemble: ``member_logits(x)`` is ``M × N × K`` (eval mode, batched)."""

    def __init__(self, stacked: StackedMembers | None = None, modules: list[nn.Module] | None = None):
        self.stacked = stacked
        self.modules = modules or []

    @property
    def vectorised(self) -> bool:
        return self.stacked is not None

    def __len__(self) -> int:
        return self.stacked.size if self.stacked is not None else len(self.modules)

    @torch.no_grad()
    def member_logits(self, x: torch.Tensor, ctx: FitContext, batch_size: int = 2048) -> torch.Tensor:
        nets = [self.stacked] if self.stacked is not None else self.modules
        for net in nets:
            net.eval()
        outs = []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size]
            with autocast(ctx):
                if self.stacked is not None:
                    outs.append(self.stacked.forward_shared(xb).float())
                else:
                    outs.append(torch.stack([m(xb).float() for m in self.modules]))
        return torch.cat(outs, dim=1)

    def member_probs(self, x: torch.Tensor, ctx: FitContext) -> torch.Tensor:
        return self.member_logits(x, ctx).softmax(-1)


def _vmap_works(stacked: StackedMembers, sample: torch.Tensor) -> bool:
    """Whether a vectorised forward and backward pass runs for this architecture."""
    probe = copy.deepcopy(stacked)
    try:
        probe(sample.unsqueeze(0).expand(probe.size, *sample.shape)).sum().backward()
    except (RuntimeError, NotImplementedError):
        return False
    return True


def member_orders(members: int, n: int, ctx: FitContext) -> torch.Tensor:
    """``M × n`` bijections of the train positions: member ``m`` reads position ``i`` as
    ``orders[m, i]``, so every member has its own data order (member 0 the loop's own)."""
    g = ctx.generator(offset=7919)
    orders = [torch.arange(n, device=ctx.device)]
    orders += [torch.randperm(n, device=ctx.device, generator=g) for _ in range(members - 1)]
    return torch.stack(orders)


def train_members(
    build: Callable[[], nn.Module],
    members: int,
    step: MemberStep,
    n: int,
    cfg: TrainConfig,
    ctx: FitContext,
    *,
    val_x: torch.Tensor | None = None,
    val_y: torch.Tensor | None = None,
    vectorise: bool | None = None,
) -> Members:
    """Build ``members`` networks (each call of ``build`` draws a fresh initialisation) and train
    them on ``n`` examples with ``step``. ``vectorise=None`` probes one ``vmap`` forward and backward
    pass on two validation inputs and falls back to sequential training where it fails (without
    ``val_x`` it vectorises); ``True``/``False`` force either way. With ``val_x``/``val_y`` the loop reports
    validation accuracy (the ensemble's when vectorised, each member's otherwise)."""
    nets = [build().to(ctx.device) for _ in range(members)]
    orders = member_orders(members, n, ctx)
    stacked = StackedMembers(nets).to(ctx.device) if vectorise is not False else None
    if stacked is not None and vectorise is None and val_x is not None:
        stacked.train()
        if not _vmap_works(stacked, val_x[:2]):
            ctx.log("ensemble: this model does not vectorise with vmap; training members one by one")
            stacked = None
    if stacked is not None:
        fitted = Members(stacked=stacked)
        train(stacked, lambda idx, progress: step(stacked, orders[:, idx], progress), n, cfg, ctx,
              val_fn=_val_accuracy(fitted, val_x, val_y, ctx))
        return fitted
    reporter = ctx.reporter
    for m, net in enumerate(nets):
        def member_step(idx: torch.Tensor, progress: float, net=net, order=orders[m:m + 1]) -> torch.Tensor:
            return step(lambda xb: net(xb[0]).unsqueeze(0), order[:, idx], progress)

        ctx.reporter = reporter if m == 0 else None  # the pruner hears the first member only
        try:
            train(net, member_step, n, cfg, ctx, val_fn=_val_accuracy(Members(modules=[net]), val_x, val_y, ctx))
        finally:
            ctx.reporter = reporter
    return Members(modules=nets)


def _val_accuracy(fitted: Members, x: torch.Tensor | None, y: torch.Tensor | None,
                  ctx: FitContext) -> Callable[[], float] | None:
    if x is None or y is None:
        return None
    return lambda: (fitted.member_probs(x, ctx).mean(0).argmax(1) == y).float().mean().item()
