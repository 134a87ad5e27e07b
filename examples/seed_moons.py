"""The seed notebook's two-moons experiment, done right, then with a GP prior along the arc.

Part 1 (the notebook's VAE): ``make_moons(n_samples=1000, noise=0.1)``, an encoder 2-128-64 to
the mean and log-variance of a 2-D latent, a decoder 2-64-128-2, Adam (lr 1e-3), 1000
full-batch steps. Fixed: the notebook scored these unbounded points with a binary
cross-entropy; here the likelihood is Gaussian with a learned per-feature variance, and the
prior is N(0, I) (a ``White`` kernel with the diagonal posterior: the plain VAE).

Part 2 (the GP-VAE): the same points, ordered along each moon's arc by their angle t, form two
sequences (one per moon) indexed by t, a real-valued, irregular index. Each latent channel gets
a Matern-3/2 GP prior over t with a learned lengthscale, and the structured posterior (the GP
conditioned on the encoder's pseudo-observations). Training uses every point at every step, with
each arc cut into windows of 50 consecutive points (Fortuin-style windows keep the dense GP
cheap); the latent path shown is the posterior mean over the whole arc.

Run: ``python examples/seed_moons.py [--out out/seed_moons]`` (about 30-40 s on one CPU core).
Needs scikit-learn (for ``make_moons``), which gpvae itself does not install: ``pip install
scikit-learn``, or gpvae's ``test`` extra (``pip install -e ".[test]"``), which has it.
Writes ``moons_latent.png``: left, the plain VAE's latent means as a scatter; right, the
GP-VAE's latent path; both coloured by the position along the arc.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import make_moons
from torch import Tensor, nn

from gpvae.batch import Batch
from gpvae.gp import GPPrior
from gpvae.kernels import Matern32, White
from gpvae.likelihoods import Gaussian
from gpvae.model import GPVAEModel
from gpvae.nets import MLPDecoder
from gpvae.posteriors import DiagonalPosterior, StructuredPosterior

__all__ = ["MoonsEncoder", "main"]

LATENT_DIM = 2
WINDOW = 50


class MoonsEncoder(nn.Module):
    """The notebook's encoder: 2-128-64, then the mean and log-variance of a 2-D latent.

    Any ``nn.Module`` with the encoder contract works: ``(y (B, N, 2), observed (B, N, 2))``
    -> ``(mean, var)``, each (B, N, 2). Every entry is observed here, so ``observed`` is unused.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.mean = nn.Linear(64, LATENT_DIM)
        self.log_var = nn.Linear(64, LATENT_DIM)

    def forward(self, y: Tensor, observed: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(y)  # (B, N, 64)
        return self.mean(h), torch.exp(self.log_var(h))


def arc_position(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Angle t in [0, pi] (up to noise) of each point along its moon's arc: (n,)."""
    outer = np.arctan2(points[:, 1], points[:, 0])  # (cos t, sin t)
    inner = np.arctan2(0.5 - points[:, 1], 1.0 - points[:, 0])  # (1 - cos t, 0.5 - sin t)
    t = np.where(labels == 0, outer, inner)
    # Noise can push an end point just below the arc's chord: angle near -pi, i.e. t near pi.
    return np.where(t < -math.pi / 2, t + 2 * math.pi, t)


def train(model: GPVAEModel, batch: Batch, steps: int, name: str, seed: int) -> None:
    """Adam (lr 1e-3) on the negative ELBO per observed entry, printed every 100 steps."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    n_obs = int(batch.observed.sum())
    for step in range(1, steps + 1):
        out = model.elbo(batch, generator=gen)
        loss = -out.elbo.sum() / n_obs
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            extra = ""
            kernel = model.prior.kernel_list[0]
            if isinstance(kernel, Matern32):
                scales = [f"{float(k.lengthscale.detach()):.3f}" for k in model.prior.kernels]
                extra = f"  lengthscales {', '.join(scales)}"
            print(
                f"[{name}] step {step:4d}  loss {loss.item():.4f}  "
                f"(loglik {out.loglik.sum().item() / n_obs:.4f}, "
                f"kl {out.kl.sum().item() / n_obs:.4f} per entry){extra}"
            )


def _neutral_legend(ax: plt.Axes) -> None:
    """Legend of marker shapes only (colour encodes the arc position)."""
    for handle in ax.legend(loc="best").legend_handles:
        if handle is not None:
            handle.set_color("0.3")


def main(argv: list[str] | None = None) -> Path:
    """Run both parts and write the figure; return its path."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/seed_moons"), help="output dir")
    parser.add_argument("--steps", type=int, default=1000, help="training steps per part")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    start = time.perf_counter()

    points, labels = make_moons(n_samples=1000, noise=0.1, random_state=args.seed)
    t = arc_position(points, labels)

    # Part 1: the plain VAE, one batch of 1000 independent points.
    y = torch.as_tensor(points, dtype=torch.float32)[None]  # (1, 1000, 2)
    plain = GPVAEModel(
        MoonsEncoder(),
        DiagonalPosterior(),
        GPPrior(White(1.0).freeze(), LATENT_DIM),
        MLPDecoder(LATENT_DIM, 2, hidden=(64, 128)),
        Gaussian(2, variance=0.1),
    )
    train(plain, Batch.from_tensors(y), args.steps, "plain VAE", args.seed)
    print(f"plain VAE trained in {time.perf_counter() - start:.1f} s")
    with torch.no_grad():
        z_plain, _ = plain.encode(Batch.from_tensors(y)).marginals()  # (1, 1000, 2)

    # Part 2: each moon as a sequence over its arc position t, cut into training windows.
    arcs = []
    for moon in (0, 1):
        idx = np.flatnonzero(labels == moon)
        idx = idx[np.argsort(t[idx])]
        arcs.append((torch.as_tensor(t[idx], dtype=torch.float32), torch.as_tensor(points[idx])))
    xs = [w for x, _ in arcs for w in x.split(WINDOW)]
    ys = [w.float() for _, p in arcs for w in p.split(WINDOW)]
    n_max = max(len(w) for w in xs)
    x_win = torch.stack([nn.functional.pad(w, (0, n_max - len(w))) for w in xs])  # (W, n)
    y_win = torch.stack([nn.functional.pad(w, (0, 0, 0, n_max - len(w))) for w in ys])
    valid = torch.stack([torch.arange(n_max) < len(w) for w in xs])  # (W, n)
    observed = valid[..., None].expand_as(y_win).clone()
    windows = Batch.from_tensors(y_win, observed=observed, x=x_win, valid=valid)
    gp = GPVAEModel(
        MoonsEncoder(),
        StructuredPosterior(),
        GPPrior(Matern32(lengthscale=0.5), LATENT_DIM, backend="dense"),
        MLPDecoder(LATENT_DIM, 2, hidden=(64, 128)),
        Gaussian(2, variance=0.1),
    )
    start_gp = time.perf_counter()
    train(gp, windows, args.steps, "GP-VAE", args.seed)
    print(f"GP-VAE trained in {time.perf_counter() - start_gp:.1f} s")
    paths = []
    with torch.no_grad():
        for x_arc, p_arc in arcs:
            whole = Batch.from_tensors(p_arc.float()[None], x=x_arc[None])
            mean, _ = gp.encode(whole).marginals()  # (1, n, 2)
            paths.append((x_arc.numpy(), mean[0].numpy()))

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), layout="constrained")
    norm = plt.Normalize(-0.3, math.pi + 0.3)
    ax = axes[0]
    for moon, marker in ((0, "o"), (1, "^")):
        sel = labels == moon
        sc = ax.scatter(
            *z_plain[0, sel].numpy().T,
            c=t[sel],
            cmap="viridis",
            norm=norm,
            s=8,
            marker=marker,
            label=f"moon {moon}",
        )
    ax.set(title="plain VAE, N(0, I) prior: latent means", xlabel="z1", ylabel="z2")
    _neutral_legend(ax)
    ax = axes[1]
    for moon, (x_arc, path) in enumerate(paths):
        ax.plot(*path.T, color="0.7", lw=0.8, zorder=1)
        ax.scatter(
            *path.T,
            c=x_arc,
            cmap="viridis",
            norm=norm,
            s=6,
            zorder=2,
            marker="o" if moon == 0 else "^",
            label=f"moon {moon}",
        )
    ax.set(title="GP-VAE, Matern-3/2 prior over t: posterior-mean path", xlabel="z1", ylabel="z2")
    _neutral_legend(ax)
    fig.colorbar(sc, ax=axes, label="position along the arc t (rad)")
    path = args.out / "moons_latent.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path} in {time.perf_counter() - start:.1f} s")
    return path


if __name__ == "__main__":
    main()
