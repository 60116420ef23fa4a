"""Weight averaging over the last epochs of a run (stochastic weight averaging, SWA).

The float parameters at the end of each epoch from ``--average-from`` on are summed; at the
end of the run their mean is loaded into a copy of the network and its BatchNorm statistics
are recomputed over one pass of training batches (averaged weights do not match any epoch's
running statistics). The sums travel in ``last.pt``, so a resumed run averages the same
epochs as one that ran straight through.
"""

from __future__ import annotations

import copy

import torch


class WeightAverage:
    """The running sum of a network's parameters at chosen epochs."""

    def __init__(self, state: dict | None = None):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        if state:
            self.sums, self.count = dict(state["sums"]), int(state["count"])

    def add(self, model: torch.nn.Module) -> None:
        """Add ``model``'s current parameters (not its buffers) to the sum."""
        for name, p in model.named_parameters():
            value = p.detach().to(torch.float64)
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
        self.count += 1

    def state(self) -> dict:
        return {"sums": self.sums, "count": self.count}

    def averaged(self, model: torch.nn.Module, batches, device) -> torch.nn.Module:
        """A copy of ``model`` with the mean parameters and BatchNorm statistics of ``batches``.

        ``batches`` yields network inputs (or tuples whose first item is one).
        """
        if not self.count:
            raise ValueError("no epochs were averaged")
        avg = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in avg.named_parameters():
                p.copy_((self.sums[name] / self.count).to(p.dtype))
        recompute_batchnorm(avg, batches, device)
        return avg


@torch.no_grad()
def recompute_batchnorm(model: torch.nn.Module, batches, device) -> None:
    """Set every BatchNorm's running mean and variance to their average over ``batches``."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    was_training = model.training
    model.train()
    for batch in batches:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        model(x.to(device).contiguous(memory_format=torch.channels_last))
    for m in norms:
        m.momentum = momenta[m]
    model.train(was_training)
