"""L2-penalised logistic regression by Newton's method, keeping a Hessian while it still serves.

The points table, its bootstrap refits, the half-life profile and the predictive model's
cross-fitting all solve the same problem: minimise over (coefficients b, intercept a)

    sum_i w_i [ln(1 + exp(eta_i)) - y_i eta_i] + |b|^2 / (2 C),    eta = X b + a,

scikit-learn's LogisticRegression objective (w_i: row weights, 1 by default; the intercept is not
penalised). Its newton-cholesky solver rebuilds the Hessian X^T diag(w p (1 - p)) X at every step,
the dominant cost at a million rows (three quarters of a refit). Most of these fits start next to
their optimum: a bootstrap refit from the fit on all the leads, a cross-fitting fit from the fit on
every fold, the next half-life from the last. There the Hessian at the start is nearly the Hessian
at the optimum, and the chord iteration

    theta <- theta - H^-1 g(theta)

with a fixed H contracts the error by |I - H^-1 H(theta*)|, the relative difference of the two
Hessians (a few per cent between a bootstrap resample and its sample): each step costs one pass of
X X^T-vector products instead of a Hessian, and gains one or two digits. The Hessian is rebuilt
only when a step contracts too little (a start far from the optimum). The optimum is the same
(the objective is strictly convex); only the path to it differs, so the results agree with
scikit-learn's to its tolerance (tests/test_logistic.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.special import expit

# Steps stop when no coefficient moves by more than this: a point is a coefficient times
# PDO / ln 2 (about 29), so the points are settled some nine digits before this.
STEP_TOLERANCE = 1e-10
# A step that shrank the last one by less than this factor asks for a fresh Hessian.
CONTRACTION = 0.1
# Steps smaller than this are taken whole: the objective, a sum over a million rows, cannot
# resolve their gain, and a step that small comes from a Hessian at the optimum's doorstep.
SEARCH_FROM = 1e-4
# fit_newton_many: a step costs a fit a thirtieth of a Hessian (the pass over X is shared), so a
# slower contraction is worth keeping before a Hessian of its own is built.
MANY_CONTRACTION = 0.3
CHUNK_ROWS = 1 << 12  # rows per block: no n x p temporary, and a block's products stay in cache


@dataclass(frozen=True)
class NewtonFit:
    coefficients: np.ndarray
    intercept: float
    hessian: np.ndarray  # (p + 1) x (p + 1), penalty included, the intercept last: a start for a nearby fit
    iterations: int
    hessians: int  # how many times the Hessian was built


def hessian(X: np.ndarray, curvature: np.ndarray, c: float) -> np.ndarray:
    """[X 1]^T diag(curvature) [X 1] + the penalty, built block by block of rows (no n x p copy)."""
    n, p = X.shape
    out = np.zeros((p + 1, p + 1))
    buffer = np.empty((min(CHUNK_ROWS, n), p))  # reused: a fresh block per chunk costs more in page faults than the product
    for begin in range(0, n, CHUNK_ROWS):
        block, d = X[begin:begin + CHUNK_ROWS], curvature[begin:begin + CHUNK_ROWS]
        weighted = np.multiply(block, d[:, None], out=buffer[:len(block)])
        out[:p, :p] += block.T @ weighted
        out[:p, p] += weighted.sum(axis=0)
    out[p, :p] = out[:p, p]
    out[p, p] = curvature.sum()
    out[np.arange(p), np.arange(p)] += 1.0 / c
    return out


def part_hessians(X: np.ndarray, curvature: np.ndarray, part: np.ndarray, parts: int) -> np.ndarray:
    """parts x (p + 1) x (p + 1): [X 1]^T diag(curvature) [X 1] over each part's rows (`part`: each
    row's part, 0 .. parts - 1), no penalty, in one pass over X: together the work of one Hessian.

    For k-fold cross-fitting, where fit f leaves out part f: its Hessian at the start is the sum of
    the other parts' plus the penalty, exactly (fold_hessians)."""
    n, p = X.shape
    out = np.zeros((parts, p + 1, p + 1))
    for begin in range(0, n, CHUNK_ROWS):
        block, d, where = (X[begin:begin + CHUNK_ROWS], curvature[begin:begin + CHUNK_ROWS],
                           part[begin:begin + CHUNK_ROWS])
        for f in np.unique(where):
            rows = block[where == f]
            weighted = rows * d[where == f, None]
            out[f, :p, :p] += rows.T @ weighted
            out[f, :p, p] += weighted.sum(axis=0)
            out[f, p, p] += d[where == f].sum()
    out[:, p, :p] = out[:, :p, p]
    return out


def fold_hessians(X: np.ndarray, curvature: np.ndarray, fold: np.ndarray, folds: int, c: float) -> np.ndarray:
    """folds x (p + 1) x (p + 1): the Hessian (penalty included) of each k-fold fit, the fit of every
    row but fold f's, under `curvature`: the parts' sum less fold f's own part. `fold`: each row's
    fold, 0 .. folds - 1, or `folds` for a row no fit leaves out."""
    parts = part_hessians(X, curvature, fold, folds + 1)
    out = parts.sum(axis=0)[None] - parts[:folds]
    p = X.shape[1]
    out[:, np.arange(p), np.arange(p)] += 1.0 / c
    return out


def _objective(X: np.ndarray, y: np.ndarray, w: np.ndarray, c: float, theta: np.ndarray) -> tuple[float, np.ndarray]:
    eta = X @ theta[:-1] + theta[-1]
    return float(w @ (np.logaddexp(0.0, eta) - y * eta) + theta[:-1] @ theta[:-1] / (2 * c)), eta


def _solve(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    try:
        return cho_solve(cho_factor(H), g)
    except LinAlgError:  # a column that is zero on every row left: the penalty alone holds it
        return np.linalg.lstsq(H, g, rcond=None)[0]


def fit_newton(X: np.ndarray, y: np.ndarray, c: float, weight: np.ndarray | None = None,
               start: np.ndarray | None = None, start_hessian: np.ndarray | None = None,
               max_iter: int = 200) -> NewtonFit:
    """The penalised fit of y (0/1) on X (C-ordered float rows), from `start` ((p + 1,), the intercept
    last; zeros if not given) with `start_hessian` as the first Hessian if given (a nearby fit's).

    Each step is halved until the objective falls (Armijo), so a far start converges too; a fresh
    Hessian is built whenever a step was cut or contracted the last by less than CONTRACTION.
    """
    X = np.ascontiguousarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=float)
    theta = np.zeros(X.shape[1] + 1) if start is None else np.array(start, dtype=float)
    H, built, last_step, fresh = start_hessian, 0, np.inf, False
    f, eta = _objective(X, y, w, c, theta)
    for iteration in range(1, max_iter + 1):
        p = expit(eta)
        residual = w * (p - y)
        g = np.append(X.T @ residual + theta[:-1] / c, residual.sum())
        if H is None:
            H, built, fresh = hessian(X, w * p * (1 - p), c), built + 1, True
        step = _solve(H, g)
        t, decrease = 1.0, g @ step
        while True:
            candidate = theta - t * step
            f_new, eta_new = _objective(X, y, w, c, candidate)
            # near the optimum the objective cannot resolve the step's gain: take it whole
            if f_new <= f - 1e-4 * t * decrease or np.max(np.abs(step)) < SEARCH_FROM or t < 1e-10:
                break
            t /= 2
        size = float(np.max(np.abs(t * step)))
        theta, f, eta = candidate, f_new, eta_new
        if size <= STEP_TOLERANCE:
            return NewtonFit(theta[:-1], float(theta[-1]), H, iteration, built)
        if t < 1.0 or (not fresh and size > CONTRACTION * last_step):
            H = None  # the kept Hessian no longer serves: rebuild it at the new point
        last_step, fresh = size, False
    warnings.warn(f"logistic fit: no convergence in {max_iter} Newton steps", RuntimeWarning, stacklevel=2)
    return NewtonFit(theta[:-1], float(theta[-1]), H, max_iter, built)


def _gradients(X: np.ndarray, y: np.ndarray, weights: np.ndarray, c: float, thetas: np.ndarray,
               fits: np.ndarray) -> np.ndarray:
    """The objective's gradient at each column of `thetas` ((p + 1) x len(fits)) under the columns
    `fits` of `weights` (n x k): X is read once, block by block, for all the fits (matrix products,
    not one matrix-vector pass over a million rows per fit)."""
    p = X.shape[1]
    out = np.zeros_like(thetas)
    for begin in range(0, len(X), CHUNK_ROWS):
        block, rows = X[begin:begin + CHUNK_ROWS], slice(begin, begin + CHUNK_ROWS)
        residual = weights[rows][:, fits] * (expit(block @ thetas[:p] + thetas[p]) - y[rows, None])
        out[:p] += block.T @ residual
        out[p] += residual.sum(axis=0)
    out[:p] += thetas[:p] / c
    return out


def _diagonals(X: np.ndarray, weights: np.ndarray, curvature: np.ndarray, c: float) -> np.ndarray:
    """(p + 1) x k: the diagonal of each weighting's Hessian (penalty included), in one pass over X."""
    p = X.shape[1]
    out = np.zeros((p + 1, weights.shape[1]))
    for begin in range(0, len(X), CHUNK_ROWS):
        block, rows = X[begin:begin + CHUNK_ROWS], slice(begin, begin + CHUNK_ROWS)
        weighted = weights[rows] * curvature[rows, None]
        out[:p] += (block * block).T @ weighted
        out[p] += weighted.sum(axis=0)
    out[:p] += 1.0 / c
    return out


def _own_factor(X: np.ndarray, weight: np.ndarray, c: float, theta: np.ndarray, keep: np.ndarray) -> tuple:
    """The Cholesky factor of one weighting's own Hessian at `theta`, on its `keep` columns."""
    fitted = expit(X @ theta[:-1] + theta[-1])
    return cho_factor(hessian(X, weight * fitted * (1 - fitted), c)[np.ix_(keep, keep)])


def _rescaled_hessians(X: np.ndarray, weights: np.ndarray, c: float, start: np.ndarray) -> list[np.ndarray]:
    """Each weighting's start Hessian, approximated: a weighting's Hessian at `start` differs from
    the unweighted rows' mostly on its diagonal (a rare signal's leads drawn more or less often), so
    the shared one is rescaled to each weighting's diagonal (one Hessian and one pass for all)."""
    p = X.shape[1]
    p0 = expit(X @ start[:p] + start[p])
    full = hessian(X, p0 * (1 - p0), c)
    scale = np.sqrt(_diagonals(X, weights, p0 * (1 - p0), c) / np.diag(full)[:, None])
    return [full * np.outer(scale[:, j], scale[:, j]) for j in range(weights.shape[1])]


def fit_newton_many(X: np.ndarray, y: np.ndarray, weights: np.ndarray, c: float, usable: np.ndarray,
                    start: np.ndarray, max_iter: int = 40, start_hessians: np.ndarray | None = None) -> np.ndarray:
    """k fits of the same rows under k row weightings (n x k, e.g. bootstrap counts), each on its
    own `usable` columns (k x p; the others get 0), all started from `start` ((p + 1,), a fit of
    the unweighted rows): the fits' (p + 1) x k parameters, the intercept last. `start_hessians`
    (k x (p + 1) x (p + 1), penalty included): each fit's own Hessian at `start`, when the caller
    has it cheaply (k-fold cross-fitting: fold_hessians).

    Without them, every fit begins with the Hessian of the unweighted rows at `start` (its usable part): the chord
    iteration of fit_newton, run for all k at once so each pass over X serves every fit. A fit whose
    step contracts too little gets its own Hessian at its point; so does one whose step grows, the
    step not taken (a resample far from the sample, where the shared Hessian misleads: fit_newton
    from `start` finished each such fit alone, two or three Hessians and a line search, 16 s of
    the 23 s of 30 bootstrap refits at a million leads). A fit whose step still grows on its own
    Hessian, or still moving after `max_iter` steps, is finished by fit_newton (its line search).
    """
    X = np.ascontiguousarray(X, dtype=float)
    y, weights = np.asarray(y, dtype=float), np.asarray(weights, dtype=float)
    p, k = X.shape[1], weights.shape[1]
    keep = np.vstack([np.asarray(usable, dtype=bool).T, np.ones((1, k), dtype=bool)])
    start = np.asarray(start, dtype=float)
    thetas = np.where(keep, start[:, None], 0.0)
    if start_hessians is None:
        start_hessians = _rescaled_hessians(X, weights, c, start)
    factors = [cho_factor(start_hessians[j][np.ix_(keep[:, j], keep[:, j])]) for j in range(k)]
    active, last, fresh = np.ones(k, dtype=bool), np.full(k, np.inf), np.zeros(k, dtype=bool)
    astray, owned = np.zeros(k, dtype=bool), np.zeros(k, dtype=bool)
    for _ in range(max_iter):
        index = np.flatnonzero(active)
        if not len(index):
            break
        gradients = _gradients(X, y, weights, c, thetas[:, index], index)
        for column, j in enumerate(index):
            step = cho_solve(factors[j], gradients[keep[:, j], column])
            size = float(np.max(np.abs(step)))
            if not np.isfinite(size) or (size > last[j] and owned[j]):  # moving away even on its own Hessian:
                active[j], astray[j] = False, True  # fit_newton's line search takes over
                continue
            misled = size > last[j]  # the shared Hessian's step grew: not taken
            if not misled:
                thetas[keep[:, j], j] -= step
                if size <= STEP_TOLERANCE:
                    active[j] = False
                    continue
            if misled or (size > MANY_CONTRACTION * last[j] and not fresh[j]):  # strays from its Hessian: its own, here
                factors[j] = _own_factor(X, weights[:, j], c, thetas[:, j], keep[:, j])
                # after a misleading step, the first of the own Hessian's has none to beat
                owned[j], fresh[j], last[j] = True, True, np.inf if misled else size
                continue
            last[j], fresh[j] = size, False
    for j in np.flatnonzero(active | astray):  # still moving after max_iter steps, or moving away
        columns, begin = keep[:p, j], (start if astray[j] else thetas[:, j])[keep[:, j]]
        # X itself when the fit uses every column: X[:, columns] copies all the rows (13 s for 14 such fits at 1M leads)
        fit = fit_newton(X if columns.all() else X[:, columns], y, c, weights[:, j], begin)
        thetas[keep[:, j], j] = np.append(fit.coefficients, fit.intercept)
    return thetas
