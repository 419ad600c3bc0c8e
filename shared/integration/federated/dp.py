"""Differentially private federated learning: Flower's server-side fixed-clipping wrapper, and its accounting.

The ServerApp wraps FedAvg in Flower's ``DifferentialPrivacyServerSideFixedClipping`` (``--dp-noise Z
--dp-clip C``): each site's update (its model minus the global one) is clipped to L2 norm C, the updates
are averaged with equal weights, and Gaussian noise of standard deviation ``Z * C / K`` is added to the
average (K sites, all of them every round). That is the Gaussian mechanism on the sum of updates with
sensitivity C under adding or removing one site, noise multiplier Z: **site-level** (client-level)
differential privacy, protecting a whole site's contribution, not only one window's.

Accounting (Flower 1.42's own ``RdpAccountant`` needs Google's ``dp-accounting`` package, which is not
installed, so it is computed here from the published formulas): T rounds, no sampling amplification (every
site trains every round).

* **Rényi DP** (Mironov 2017, Prop. 7 and composition): the Gaussian mechanism of noise multiplier Z is
  (a, a / (2 Z^2))-RDP for every order a > 1, so T rounds are (a, T a / (2 Z^2))-RDP; converted to
  (epsilon, delta) with Canonne, Kamath & Steinke 2020 (Prop. 12 / Balle et al. 2020 Thm. 21):
  ``epsilon = rdp(a) + log((a - 1) / a) - (log(delta) + log(a)) / (a - 1)``, minimised over a grid of orders.
* **exact**: T Gaussian mechanisms of multiplier Z compose to mu-Gaussian DP with ``mu = sqrt(T) / Z``
  (Dong, Roth & Su 2019, Cor. 3.3), whose exact (epsilon, delta) curve is
  ``delta(eps) = Phi(-eps/mu + mu/2) - exp(eps) Phi(-eps/mu - mu/2)`` (their Cor. 2.13); epsilon is found by
  bisection. It is the tighter of the two and the one the report states.

With Z = 0 (clipping only) there is no privacy guarantee: epsilon is infinite.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from scipy.stats import norm

ORDERS = tuple([1.0 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [80.0, 128.0, 256.0, 512.0, 1024.0])
DELTA = 1e-5


def rdp_epsilon(noise: float, rounds: int, delta: float = DELTA) -> float:
    """(epsilon at delta) of ``rounds`` Gaussian releases of noise multiplier ``noise`` via RDP."""
    _check(noise, rounds, delta)
    if noise == 0:
        return math.inf
    best = math.inf
    for a in ORDERS:
        rdp = rounds * a / (2.0 * noise * noise)
        eps = rdp + math.log((a - 1.0) / a) - (math.log(delta) + math.log(a)) / (a - 1.0)
        best = min(best, eps)
    return max(best, 0.0)


def gdp_delta(eps: float, mu: float) -> float:
    """delta(eps) of mu-Gaussian DP (Dong, Roth & Su 2019, Cor. 2.13)."""
    return float(norm.cdf(-eps / mu + mu / 2.0) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2.0))


def exact_epsilon(noise: float, rounds: int, delta: float = DELTA) -> float:
    """(epsilon at delta) of ``rounds`` Gaussian releases, exactly (mu = sqrt(rounds) / noise), by bisection."""
    _check(noise, rounds, delta)
    if noise == 0:
        return math.inf
    mu = math.sqrt(rounds) / noise
    if gdp_delta(0.0, mu) <= delta:
        return 0.0
    lo, hi = 0.0, 1.0
    while gdp_delta(hi, mu) > delta:
        hi *= 2.0
        if hi > 1e6:
            return math.inf
    for _ in range(100):
        mid = (lo + hi) / 2.0
        if gdp_delta(mid, mu) > delta:
            lo = mid
        else:
            hi = mid
    return hi


def _check(noise: float, rounds: int, delta: float) -> None:
    if noise < 0 or rounds < 1 or not 0 < delta < 1:
        raise ValueError(f"privacy accounting: noise >= 0, rounds >= 1, 0 < delta < 1; got {noise}, {rounds}, "
                         f"{delta}")


def accounting(noise: float, rounds: int, sites: int, clip: float, delta: float = DELTA) -> dict[str, Any]:
    """What a DP row states about its privacy: both epsilons, the unit protected, the method."""
    return {"noise_multiplier": noise, "clip_norm": clip, "rounds": rounds, "sites_per_round": sites,
            "sampling": "none (every site, every round)", "delta": delta, "unit": "site (add/remove one)",
            "epsilon": exact_epsilon(noise, rounds, delta), "epsilon_rdp": rdp_epsilon(noise, rounds, delta),
            "accountant": "exact Gaussian-DP composition (Dong-Roth-Su 2019); RDP (Mironov 2017, CKS 2020 "
                          "conversion) beside it; written here, Flower's RdpAccountant needs dp-accounting"}


QUICK = {"sites": 3, "rounds": 3, "alpha": 0.5, "noise": (0.0, 1.0), "clip": 1.0}
FULL = {"sites": 5, "rounds": 20, "alpha": 0.5, "noise": (0.0, 0.5, 1.0, 2.0), "clip": 1.0}


def _num(v: float) -> float | None:
    return None if math.isinf(v) else round(v, 4)


def row(summary: dict[str, Any]) -> dict[str, Any]:
    """An ``fl_dp_z<noise>`` row: accuracy of the private global model, epsilon at delta stated."""
    from shared.integration.federated.report import row as fl_row

    c = summary["config"]
    acct = accounting(c["dp_noise"], summary["traffic"]["rounds"], len(summary["clients"]), c["dp_clip"])
    r = fl_row(summary)
    r["strategy"] = f"fl_dp_z{c['dp_noise']:g}"
    r.update({"noise_multiplier": c["dp_noise"], "clip_norm": c["dp_clip"], "delta": acct["delta"],
              "epsilon": _num(acct["epsilon"]), "epsilon_rdp": _num(acct["epsilon_rdp"]), "dp_unit": acct["unit"],
              "accountant": acct["accountant"], "sites": len(summary["clients"])})
    return r


def report_rows(domain: str, quick: bool, out_dir: Path) -> list[dict[str, Any]]:
    """``fl_dp`` rows: FedAvg under server-side clipping at each noise multiplier, same sites and seed."""
    from shared.integration.federated.silo import run_sites

    shape = QUICK if quick else FULL
    return [row(run_sites(domain, quick, out_dir, shape, dp_noise=z, dp_clip=shape["clip"]))
            for z in shape["noise"]]
