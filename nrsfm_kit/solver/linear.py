"""Linear solvers of one Gauss-Newton step, differentiable (Neural Non-Rigid Tracking App. B.2).

Each GN/LM step solves (J^T J + D) x = -J^T r, D = diag(d) (damping on valid nodes, 1 on frozen ones).

Backward of a linear solve A x = c (App. B.2): with g = dL/dx,

    dL/dc = A^-T g,        dL/dA = -(dL/dc) x^T.

(a) :func:`dense_solve`: Cholesky factorisation of the assembled A; the backward re-uses the factor.
(b) :func:`pcg_solve`: matrix-free preconditioned conjugate gradient (block-Jacobi 6x6 preconditioner,
    the data-parallel scheme of DeepDeform's GPU solver): only products J v and J^T u are formed. Its
    backward ("adjoint") solves the adjoint system A y = g with the same PCG and maps dL/dA, dL/dc
    straight into dL/dJ, dL/dr without forming J^T J:

        dL/dJ_row = -((J_row . y) x + (J_row . x) y + r_row y),   dL/dr_row = -(J_row . y).

    With ``unrolled=True`` autograd differentiates through the CG iterations instead (torch products,
    preconditioner held fixed); memory grows with the number of iterations, and the gradient matches
    the adjoint one once CG has converged.
"""

from __future__ import annotations

import torch

from nrsfm_kit.kernels import gauss_newton as gk
from nrsfm_kit.kernels.gauss_newton import ResidualBlock

__all__ = ["CholeskySolve", "DenseSolve", "Assembler", "dense_solve", "assemble", "pcg_solve", "PCGSolve"]


class CholeskySolve(torch.autograd.Function):
    """x = A^-1 c for SPD A (B, n, n), c (B, n); backward re-uses the Cholesky factor (App. B.2)."""

    @staticmethod
    def forward(ctx, A, c):
        L = _robust_cholesky(A)
        x = torch.cholesky_solve(c.unsqueeze(-1), L).squeeze(-1)
        ctx.save_for_backward(L, x)
        return x

    @staticmethod
    def backward(ctx, gx):
        L, x = ctx.saved_tensors
        gc = torch.cholesky_solve(gx.unsqueeze(-1), L).squeeze(-1)  # A^-T g (A symmetric)
        gA = -gc.unsqueeze(-1) * x.unsqueeze(-2)
        return gA, gc


def _check_finite_system(where: str, X: torch.Tensor) -> None:
    """FloatingPointError naming the batch items whose system (A or a solution, (B, ...)) is not finite: a residual
    term's J or r, or the damping, held NaN or inf (the kernels do not check their inputs, for speed)."""
    bad = (~torch.isfinite(X.flatten(1))).any(-1)
    if bool(bad.any()):
        items = bad.nonzero().flatten().tolist()
        raise FloatingPointError(
            f"{where}: expected finite normal equations, found NaN or inf in batch item(s) {items[:8]} (a residual "
            f"term's Jacobian J or residual r, or the damping diag, is not finite)")


def _robust_cholesky(A: torch.Tensor) -> torch.Tensor:
    """Cholesky factor; matrices that are not numerically SPD get a growing diagonal shift (documented
    fallback for singular systems: the step is damped, never NaN)."""
    L, info = torch.linalg.cholesky_ex(A)
    if not bool((info > 0).any()):
        return L
    _check_finite_system("dense_solve", A)
    n = A.shape[-1]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    scale = A.diagonal(dim1=-2, dim2=-1).abs().mean(-1).clamp_min(1e-12)  # (B,)
    shift = 1e-10
    while bool((info > 0).any()):
        bad = (info > 0).to(A.dtype)
        A = A + (bad * scale * shift)[:, None, None] * eye
        L, info = torch.linalg.cholesky_ex(A)
        shift *= 100.0
        if shift > 1e6:
            raise FloatingPointError("dense_solve: the system could not be made positive definite")
    return L


class Assembler:
    """Dense normal equations A = sum_f J_f^T J_f, b = sum_f J_f^T r_f of a list of residual families.

    Families with the same ``cols`` tensor (the terms of one point set: 2D, depth, ...) are merged by
    stacking their rows, so each point set is reduced once. The :class:`BlockLayout` of each ``cols``
    (which groups feed which node pair) is built on first use and reused for every iteration of a solve.

    Args:
        num_nodes: N. assembly: see :class:`~nrsfm_kit.solver.config.SolverConfig` ("auto", "blocks",
            "segmented", "atomic", "reference"). backend: "warp" or "torch" (decides "auto").
    """

    def __init__(self, num_nodes: int, assembly: str = "auto", backend: str = "warp"):
        self.num_nodes, self.assembly, self.backend = int(num_nodes), assembly, backend
        self._layouts: dict = {}

    def method(self, device: torch.device) -> str:
        if self.assembly != "auto":
            return self.assembly
        if self.backend == "torch":
            return "reference"
        return "segmented" if device.type == "cuda" else "blocks"

    def layout(self, cols: torch.Tensor) -> gk.BlockLayout:
        key = id(cols)
        if key not in self._layouts:
            self._layouts[key] = (gk.BlockLayout(cols, self.num_nodes), cols)  # keep cols alive: id stays unique
        return self._layouts[key][0]

    @staticmethod
    def _families(blocks: list[ResidualBlock]):
        merged: dict = {}
        for blk in blocks:
            merged.setdefault(id(blk.cols), []).append(blk)
        for fam in merged.values():
            J = fam[0].J if len(fam) == 1 else torch.cat([f.J for f in fam], 2)
            r = fam[0].r if len(fam) == 1 else torch.cat([f.r for f in fam], 2)
            yield fam[0].cols, J, r

    def block_form(self, blocks: list[ResidualBlock]):
        """The non-zero 6x6 blocks of A (never the dense matrix): (blocks (B, U, 6, 6), pair_i (U,), pair_j (U,),
        b (B, 6N)), the blocks of all families concatenated (a pair may repeat: repeats add)."""
        vals, pi, pj, b = [], [], [], None
        for cols, J, r in self._families(blocks):
            lay = self.layout(cols)
            blk, bi = gk.normal_blocks_torch(J, r, lay)
            vals.append(blk)
            pi.append(lay.pairs.i)
            pj.append(lay.pairs.j)
            b = bi if b is None else b + bi
        return torch.cat(vals, 1), torch.cat(pi), torch.cat(pj), b

    def __call__(self, blocks: list[ResidualBlock]) -> tuple[torch.Tensor, torch.Tensor]:
        """Dense (A (B, 6N, 6N), b (B, 6N))."""
        if self.method(blocks[0].J.device) == "blocks":  # all families' blocks scattered at once
            vals, pi, pj, b = self.block_form(blocks)
            return gk.dense_from_blocks(vals, pi, pj, self.num_nodes), b
        A = b = None
        for cols, J, r in self._families(blocks):
            how = self.method(J.device)
            if how == "segmented":
                Ai, bi = gk.normal_equations_segmented(J, r, self.layout(cols))
            elif how == "atomic":
                Ai, bi = gk.normal_equations(J, r, cols, self.num_nodes)
            else:
                Ai, bi = gk.normal_equations_torch(J, r, cols, self.num_nodes)
            A = Ai if A is None else A + Ai
            b = bi if b is None else b + bi
        return A, b


def assemble(blocks: list[ResidualBlock], num_nodes: int, backend: str = "warp", assembly: str = "auto"):
    """Normal equations A = sum J^T J (B, 6N, 6N) and b = sum J^T r (B, 6N) over residual families."""
    return Assembler(num_nodes, assembly, backend)(blocks)


def _freeze(A: torch.Tensor, b: torch.Tensor, valid_nodes: torch.Tensor | None):
    """Zero the rows / columns of J^T J and the entries of J^T r of frozen nodes (= zeroing their Jacobian
    columns); with a diagonal of 1 there they keep their motion."""
    if valid_nodes is None or bool(valid_nodes.all()):
        return A, b
    m6 = valid_nodes.to(A.dtype).repeat_interleave(6, dim=1)
    return A * (m6.unsqueeze(-1) * m6.unsqueeze(-2)), b * m6


class DenseSolve(torch.autograd.Function):
    """x = -(J^T J + diag(d))^-1 J^T r over residual families, by dense Cholesky; backward without J^T J.

    Forward: the normal equations by the :class:`Assembler` (no autograd graph), Cholesky, solve.
    Backward (App. B.2 mapped to the Jacobian rows, as the PCG adjoint does): with g_c = A^-1 dL/dx
    (masked to the valid nodes),

        dL/dJ_row = -((J_row . g_c) x + (J_row . x + r_row) g_c),   dL/dr_row = -(J_row . g_c),
        dL/dd = -(g_c * x),

    i.e. the exact derivative of the solve, in O(rows x 6 nb) per family instead of differentiating the
    O(N^2) dense assembly (``solve_adjoint_jacobian``: Warp kernel or its torch reference).
    """

    @staticmethod
    def forward(ctx, diag, num_nodes, valid_nodes, asm, cols, *JR):
        k = len(cols)
        Js, rs = [t.detach() for t in JR[:k]], [t.detach() for t in JR[k:]]
        blocks = [ResidualBlock(J, r, c) for J, r, c in zip(Js, rs, cols)]
        with torch.no_grad():
            A, b = _freeze(*asm(blocks), valid_nodes)
            A.view(A.shape[0], -1)[:, :: 6 * num_nodes + 1] += diag  # the diagonal, in place (A is ours)
            L = _robust_cholesky(A)
            x = torch.cholesky_solve(-b.unsqueeze(-1), L).squeeze(-1)
        ctx.save_for_backward(L, x, *Js, *rs)
        ctx.meta = (k, cols, valid_nodes, asm.backend)
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gx):
        L, x, *JR = ctx.saved_tensors
        k, cols, valid_nodes, backend = ctx.meta
        gc = torch.cholesky_solve(gx.contiguous().unsqueeze(-1), L).squeeze(-1)
        g_diag = -(gc * x)
        if valid_nodes is not None:
            gc = gc * valid_nodes.to(gc.dtype).repeat_interleave(6, dim=1)
        adj = gk.solve_adjoint_jacobian if backend == "warp" else gk.solve_adjoint_jacobian_torch
        gJ, gr = [], []
        for J, r, c in zip(JR[:k], JR[k:], cols):
            dJ, dr = adj(J, r, c, x, gc)
            gJ.append(dJ)
            gr.append(dr)
        return (g_diag, None, None, None, None, *gJ, *gr)


def dense_solve(blocks: list[ResidualBlock], diag: torch.Tensor, num_nodes: int, backend: str = "warp", *,
                valid_nodes: torch.Tensor | None = None, assembler: Assembler | None = None):
    """Step x = -(J^T J + diag(d))^-1 J^T r (B, 6N) by dense Cholesky, differentiable (App. B.2).

    ``valid_nodes`` (B, N) bool freezes nodes: their rows and columns of J^T J and J^T r are zeroed
    (the same as zeroing their Jacobian columns), so with d = 1 there they keep their motion.
    With the torch backend ("reference" assembly) autograd differentiates the assembly and the
    Cholesky solve (:class:`CholeskySolve`): the straightforward reference. Otherwise :class:`DenseSolve`
    maps the solve's adjoint straight to the Jacobian rows.
    """
    asm = assembler if assembler is not None else Assembler(num_nodes, "auto", backend)
    if asm.method(blocks[0].J.device) == "reference":
        A, b = _freeze(*asm(blocks), valid_nodes)
        x = CholeskySolve.apply(A + torch.diag_embed(diag), -b)
    else:
        cols = tuple(blk.cols for blk in blocks)
        x = DenseSolve.apply(diag, num_nodes, valid_nodes, asm, cols, *[blk.J for blk in blocks],
                             *[blk.r for blk in blocks])
    _check_finite_system("dense_solve", x.detach())  # NaN / inf in J, r or diag: an error, never a NaN step
    return x


# --------------------------------------------------------------------------------------------------
# matrix-free PCG
# --------------------------------------------------------------------------------------------------


def _ops(backend: str):
    if backend == "warp":
        return gk.jac_vec, gk.jac_t_vec, gk.block_diagonal, gk.solve_adjoint_jacobian
    return gk.jac_vec_torch, gk.jac_t_vec_torch, gk.block_diagonal_torch, gk.solve_adjoint_jacobian_torch


def _matvec(Js, rs_unused, cols, diag, v, num_nodes, backend):
    jv, jtv, _, _ = _ops(backend)
    out = diag * v
    for J, c in zip(Js, cols):
        out = out + jtv(J, c, jv(J, c, v), num_nodes)
    return out


def _preconditioner(Js, cols, diag, num_nodes, backend):
    _, _, bd, _ = _ops(backend)
    B = diag.shape[0]
    D = torch.diag_embed(diag.view(B, num_nodes, 6))
    for J, c in zip(Js, cols):
        D = D + bd(J, c, num_nodes)
    return torch.linalg.inv(D)  # (B, N, 6, 6), SPD blocks


def _pcg(matvec, Minv, c, max_iter: int, tol: float):
    """Batched PCG for A x = c (A SPD via ``matvec``), block-Jacobi ``Minv`` (B, N, 6, 6)."""
    B, n = c.shape

    def precond(v):
        return (Minv @ v.view(B, -1, 6, 1)).view(B, n)

    x = torch.zeros_like(c)
    res = c
    z = precond(res)
    p = z
    rz = (res * z).sum(-1)
    cnorm = c.norm(dim=-1)
    tiny = torch.finfo(c.dtype).tiny
    iters = 0
    for _ in range(max_iter):
        if bool((res.norm(dim=-1) <= tol * cnorm).all()):
            break
        iters += 1
        Ap = matvec(p)
        pAp = (p * Ap).sum(-1)
        alpha = torch.where(pAp.abs() > tiny, rz / torch.where(pAp.abs() > tiny, pAp, torch.ones_like(pAp)),
                            torch.zeros_like(pAp))
        x = x + alpha[:, None] * p
        res = res - alpha[:, None] * Ap
        z = precond(res)
        rz_new = (res * z).sum(-1)
        beta = torch.where(rz.abs() > tiny, rz_new / torch.where(rz.abs() > tiny, rz, torch.ones_like(rz)),
                           torch.zeros_like(rz))
        p = z + beta[:, None] * p
        rz = rz_new
    _check_finite_system("pcg_solve", x)
    return x, iters


class PCGSolve(torch.autograd.Function):
    """x = -(sum J^T J + diag(d))^-1 sum J^T r, matrix-free; backward by an adjoint PCG solve."""

    @staticmethod
    def forward(ctx, diag, num_nodes, max_iter, tol, backend, cols, *JR):
        k = len(cols)
        Js, rs = [t.detach() for t in JR[:k]], [t.detach() for t in JR[k:]]
        _, jtv, _, _ = _ops(backend)
        diag = diag.detach()
        c = torch.zeros_like(diag)
        for J, r, cc in zip(Js, rs, cols):
            c = c - jtv(J, cc, r, num_nodes)
        Minv = _preconditioner(Js, cols, diag, num_nodes, backend)
        x, iters = _pcg(lambda v: _matvec(Js, rs, cols, diag, v, num_nodes, backend), Minv, c, max_iter, tol)
        ctx.save_for_backward(diag, x, Minv, *Js, *rs)
        ctx.meta = (num_nodes, max_iter, tol, backend, cols)
        ctx.iters = iters
        return x

    @staticmethod
    def backward(ctx, gx):
        diag, x, Minv, *JR = ctx.saved_tensors
        num_nodes, max_iter, tol, backend, cols = ctx.meta
        k = len(cols)
        Js, rs = JR[:k], JR[k:]
        y, _ = _pcg(lambda v: _matvec(Js, rs, cols, diag, v, num_nodes, backend), Minv, gx.contiguous(),
                    max_iter, tol)
        _, _, _, adj = _ops(backend)
        gJs, grs = [], []
        for J, r, cc in zip(Js, rs, cols):
            dJ, dr = adj(J, r, cc, x, y)
            gJs.append(dJ)
            grs.append(dr)
        return (None, None, None, None, None, None, *gJs, *grs)


def pcg_solve(blocks: list[ResidualBlock], diag: torch.Tensor, num_nodes: int, *, max_iter: int = 200,
              tol: float = 1e-7, backend: str = "warp", unrolled: bool = False):
    """Step x = -(J^T J + diag(d))^-1 J^T r (B, 6N) by matrix-free block-Jacobi PCG.

    ``unrolled=False``: custom backward solving the adjoint system by PCG (memory O(nnz J)).
    ``unrolled=True``: plain autograd through the CG iterations with torch products.
    """
    cols = tuple(b.cols for b in blocks)
    if not unrolled:
        return PCGSolve.apply(diag, num_nodes, max_iter, tol, backend, cols,
                              *[b.J for b in blocks], *[b.r for b in blocks])
    Js = [b.J for b in blocks]
    c = torch.zeros_like(diag)
    for b in blocks:
        c = c - gk.jac_t_vec_torch(b.J, b.cols, b.r, num_nodes)
    Minv = _preconditioner([J.detach() for J in Js], cols, diag.detach(), num_nodes, "torch")
    x, _ = _pcg(lambda v: _matvec(Js, None, cols, diag, v, num_nodes, "torch"), Minv, c, max_iter, tol)
    return x
