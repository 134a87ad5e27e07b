import numpy as np, sys
from gpvae import GPVAE
rng = np.random.default_rng(0)
t = np.arange(40.0)
X = np.stack([np.stack([np.sin(t/5+i), np.cos(t/7+i), 0.1*t], -1) for i in range(6)])
X[rng.random(X.shape) < 0.2] = np.nan
for lik, kern, post in [("gaussian","matern32","structured"),("gaussian_gp","matern52","structured"),("student_t","rbf","banded")]:
    m = GPVAE(latent_dim=2, kernel=kern, likelihood=lik, posterior=post, hidden=(8,), epochs=2, progress=False, seed=1).fit(X)
    m.save(f"{sys.argv[1]}/{lik}_{kern}_{post}")
    np.save(f"{sys.argv[1]}/{lik}_{kern}_{post}/impute_mean.npy", m.impute(X[:2], num_samples=8).mean)
np.save(f"{sys.argv[1]}/X.npy", X[:2])
