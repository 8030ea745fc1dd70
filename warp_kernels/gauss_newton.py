"""Warp kernels of the differentiable Gauss-Newton solver (Neural Non-Rigid Tracking §4.3, App. B).

Unknowns: per graph node i a rotation increment eps_i (3, radians, R_i <- exp(eps_i^) R_i) and a
translation t_i (3, metres): 6 columns per node, column block ``6 i .. 6 i + 5`` = (eps_i, t_i).

Every residual family is stored in one *block-sparse* layout shared by all kernels below:

- ``J``    (B, G, g, nb * 6) Jacobian values: G groups of g residual rows that depend on the same nb
  nodes; entry ``[b, G, row, 6 a + k]`` = d r_row / d x_{6 cols[G, a] + k};
- ``r``    (B, G, g) residual values;
- ``cols`` (G, nb) int32 node ids, -1 = unused block (contributes nothing).

Data terms: one group per point (g = 7 rows: 2D reprojection u, v; depth; point-to-point x, y, z;
point-to-plane), nb = 4 anchors. ARAP: one group per edge (g = 3 rows), nb = 2 (node i, node j).

The residual/Jacobian kernels are differentiable by Warp's generated adjoint (launched explicitly
with ``adjoint=True`` by the torch bridge). The assembly/product kernels are linear in their inputs
and have hand-written adjoints here. Kernels are generic over float32/float64 (``typing.Any``).
No torch import in this module.
"""

from __future__ import annotations

from typing import Any

import warp as wp

NUM_ANCHORS = 4  # anchors per point (DeformationGraph.pixel_anchors holds A = 4); bridge pads fewer
DATA_ROWS = 7  # u, v, depth, point-to-point x, y, z, point-to-plane


@wp.func
def _store_row(J: wp.array(dtype=Any, ndim=4), b: int, grp: int, row: int, a: int, al: Any, rd: Any, g: Any):
    c = wp.cross(rd, g)
    J[b, grp, row, 6 * a + 0] = al * c[0]
    J[b, grp, row, 6 * a + 1] = al * c[1]
    J[b, grp, row, 6 * a + 2] = al * c[2]
    J[b, grp, row, 6 * a + 3] = al * g[0]
    J[b, grp, row, 6 * a + 4] = al * g[1]
    J[b, grp, row, 6 * a + 5] = al * g[2]


@wp.kernel
def data_terms_kernel(
    points: wp.array(dtype=Any, ndim=3),  # (B, P, 3) source points, metres
    anchors: wp.array(dtype=wp.int32, ndim=2),  # (P, 4) node ids, -1 padding
    anchor_w: wp.array(dtype=Any, ndim=2),  # (P, 4) skinning weights alpha
    nodes: wp.array(dtype=Any, ndim=2),  # (N, 3) node positions v, metres
    rot: wp.array(dtype=Any, ndim=4),  # (B, N, 3, 3) current rotations R
    trans: wp.array(dtype=Any, ndim=3),  # (B, N, 3) current translations t, metres
    corr: wp.array(dtype=Any, ndim=3),  # (B, P, 2) target pixels c_u (u = column, v = row)
    target_z: wp.array(dtype=Any, ndim=2),  # (B, P) target depth sampled at c_u, metres
    target_p: wp.array(dtype=Any, ndim=3),  # (B, P, 3) target points (point-to-point / plane), metres
    normals: wp.array(dtype=Any, ndim=3),  # (B, P, 3) target normals (point-to-plane)
    wt: wp.array(dtype=Any, ndim=3),  # (B, P, 4) row weights: 2D, depth, point, plane (sqrt(lambda) w)
    intr: wp.array(dtype=Any, ndim=2),  # (B, 4) fx, fy, cx, cy
    min_depth: Any,  # 2D rows are zero for warped points with z <= min_depth (behind the camera)
    r: wp.array(dtype=Any, ndim=3),  # out (B, P, 7)
    J: wp.array(dtype=Any, ndim=4),  # out (B, P, 7, 24)
):
    b, p = wp.tid()
    zero = type(min_depth)(0.0)
    px = points[b, p, 0]
    py = points[b, p, 1]
    pz = points[b, p, 2]
    q = wp.vector(zero, zero, zero)
    for a in range(4):
        n = anchors[p, a]
        if n >= 0:
            d = wp.vector(px - nodes[n, 0], py - nodes[n, 1], pz - nodes[n, 2])
            rd = wp.vector(
                rot[b, n, 0, 0] * d[0] + rot[b, n, 0, 1] * d[1] + rot[b, n, 0, 2] * d[2],
                rot[b, n, 1, 0] * d[0] + rot[b, n, 1, 1] * d[1] + rot[b, n, 1, 2] * d[2],
                rot[b, n, 2, 0] * d[0] + rot[b, n, 2, 1] * d[1] + rot[b, n, 2, 2] * d[2],
            )
            moved = wp.vector(
                rd[0] + nodes[n, 0] + trans[b, n, 0],
                rd[1] + nodes[n, 1] + trans[b, n, 1],
                rd[2] + nodes[n, 2] + trans[b, n, 2],
            )
            q = q + anchor_w[p, a] * moved

    # d r_row / d q (3-vectors) and residual values, row by row
    fx = intr[b, 0]
    fy = intr[b, 1]
    cx = intr[b, 2]
    cy = intr[b, 3]
    w2 = wt[b, p, 0]
    wd = wt[b, p, 1]
    wpt = wt[b, p, 2]
    wpl = wt[b, p, 3]
    g0 = wp.vector(zero, zero, zero)
    g1 = wp.vector(zero, zero, zero)
    r0 = zero
    r1 = zero
    if q[2] > min_depth:
        iz = type(min_depth)(1.0) / q[2]
        g0 = w2 * wp.vector(fx * iz, zero, -fx * q[0] * iz * iz)
        g1 = w2 * wp.vector(zero, fy * iz, -fy * q[1] * iz * iz)
        r0 = w2 * (fx * q[0] * iz + cx - corr[b, p, 0])
        r1 = w2 * (fy * q[1] * iz + cy - corr[b, p, 1])
    g2 = wp.vector(zero, zero, wd)
    r2 = wd * (q[2] - target_z[b, p])
    g3 = wp.vector(wpt, zero, zero)
    g4 = wp.vector(zero, wpt, zero)
    g5 = wp.vector(zero, zero, wpt)
    dq = wp.vector(q[0] - target_p[b, p, 0], q[1] - target_p[b, p, 1], q[2] - target_p[b, p, 2])
    nv = wp.vector(normals[b, p, 0], normals[b, p, 1], normals[b, p, 2])
    g6 = wpl * nv
    r[b, p, 0] = r0
    r[b, p, 1] = r1
    r[b, p, 2] = r2
    r[b, p, 3] = wpt * dq[0]
    r[b, p, 4] = wpt * dq[1]
    r[b, p, 5] = wpt * dq[2]
    r[b, p, 6] = wpl * wp.dot(nv, dq)

    # Jacobian blocks: d q / d eps_a = -alpha_a [R_a (p - v_a)]^, d q / d t_a = alpha_a I, hence for a
    # row with d r / d q = g: rotation part alpha_a (R_a (p - v_a)) x g, translation part alpha_a g.
    for a in range(4):
        n = anchors[p, a]
        al = zero
        rd = wp.vector(zero, zero, zero)
        if n >= 0:
            al = anchor_w[p, a]
            d = wp.vector(px - nodes[n, 0], py - nodes[n, 1], pz - nodes[n, 2])
            rd = wp.vector(
                rot[b, n, 0, 0] * d[0] + rot[b, n, 0, 1] * d[1] + rot[b, n, 0, 2] * d[2],
                rot[b, n, 1, 0] * d[0] + rot[b, n, 1, 1] * d[1] + rot[b, n, 1, 2] * d[2],
                rot[b, n, 2, 0] * d[0] + rot[b, n, 2, 1] * d[1] + rot[b, n, 2, 2] * d[2],
            )
        _store_row(J, b, p, 0, a, al, rd, g0)
        _store_row(J, b, p, 1, a, al, rd, g1)
        _store_row(J, b, p, 2, a, al, rd, g2)
        _store_row(J, b, p, 3, a, al, rd, g3)
        _store_row(J, b, p, 4, a, al, rd, g4)
        _store_row(J, b, p, 5, a, al, rd, g5)
        _store_row(J, b, p, 6, a, al, rd, g6)


@wp.kernel
def arap_terms_kernel(
    nodes: wp.array(dtype=Any, ndim=2),  # (N, 3) metres
    edges: wp.array(dtype=wp.int32, ndim=2),  # (N, K) neighbour ids, -1 padding
    scale: wp.array(dtype=Any, ndim=2),  # (N, K) residual scale sqrt(lambda_reg * w_ij)
    rot: wp.array(dtype=Any, ndim=4),  # (B, N, 3, 3)
    trans: wp.array(dtype=Any, ndim=3),  # (B, N, 3)
    r: wp.array(dtype=Any, ndim=3),  # out (B, N*K, 3)
    J: wp.array(dtype=Any, ndim=4),  # out (B, N*K, 3, 12): columns (eps_i, t_i, eps_j, t_j)
):
    """ARAP residual r_ij = s (R_i (v_j - v_i) + v_i + t_i - v_j - t_j) (eq. 11) and its Jacobian."""
    b, i, k = wp.tid()
    K = edges.shape[1]
    grp = i * K + k
    j = edges[i, k]
    s = scale[i, k]
    zero = type(s)(0.0)
    if j < 0:
        for c in range(3):
            r[b, grp, c] = zero
            for l in range(12):
                J[b, grp, c, l] = zero
        return
    d = wp.vector(nodes[j, 0] - nodes[i, 0], nodes[j, 1] - nodes[i, 1], nodes[j, 2] - nodes[i, 2])
    a = wp.vector(
        rot[b, i, 0, 0] * d[0] + rot[b, i, 0, 1] * d[1] + rot[b, i, 0, 2] * d[2],
        rot[b, i, 1, 0] * d[0] + rot[b, i, 1, 1] * d[1] + rot[b, i, 1, 2] * d[2],
        rot[b, i, 2, 0] * d[0] + rot[b, i, 2, 1] * d[1] + rot[b, i, 2, 2] * d[2],
    )
    r[b, grp, 0] = s * (a[0] - d[0] + trans[b, i, 0] - trans[b, j, 0])
    r[b, grp, 1] = s * (a[1] - d[1] + trans[b, i, 1] - trans[b, j, 1])
    r[b, grp, 2] = s * (a[2] - d[2] + trans[b, i, 2] - trans[b, j, 2])
    # d (exp(eps^) a) / d eps = -[a]^ ; rows of -[a]^: (0, a2, -a1), (-a2, 0, a0), (a1, -a0, 0)
    J[b, grp, 0, 0] = zero
    J[b, grp, 0, 1] = s * a[2]
    J[b, grp, 0, 2] = -s * a[1]
    J[b, grp, 1, 0] = -s * a[2]
    J[b, grp, 1, 1] = zero
    J[b, grp, 1, 2] = s * a[0]
    J[b, grp, 2, 0] = s * a[1]
    J[b, grp, 2, 1] = -s * a[0]
    J[b, grp, 2, 2] = zero
    for c in range(3):
        for l in range(3):
            e = zero
            if c == l:
                e = s
            J[b, grp, c, 3 + l] = e
            J[b, grp, c, 6 + l] = zero
            J[b, grp, c, 9 + l] = -e


@wp.kernel(enable_backward=False)
def normal_equations_kernel(
    J: wp.array(dtype=Any, ndim=4),  # (B, G, g, nb*6)
    r: wp.array(dtype=Any, ndim=3),  # (B, G, g)
    cols: wp.array(dtype=wp.int32, ndim=2),  # (G, nb)
    A: wp.array(dtype=Any, ndim=3),  # out, accumulated (B, 6N, 6N): J^T J
    bvec: wp.array(dtype=Any, ndim=2),  # out, accumulated (B, 6N): J^T r
):
    """Scatter-add one group's J^T J (nb x nb blocks of 6x6) and J^T r with atomics."""
    b, grp = wp.tid()
    nb = cols.shape[1]
    g = r.shape[2]
    for a in range(nb):
        ca = cols[grp, a]
        if ca < 0:
            continue
        for k in range(6):
            sb = r[b, grp, 0] * J[b, grp, 0, 6 * a + k]
            for row in range(1, g):
                sb += r[b, grp, row] * J[b, grp, row, 6 * a + k]
            wp.atomic_add(bvec, b, 6 * ca + k, sb)
            for bb in range(nb):
                cb = cols[grp, bb]
                if cb < 0:
                    continue
                for m in range(6):
                    s = J[b, grp, 0, 6 * a + k] * J[b, grp, 0, 6 * bb + m]
                    for row in range(1, g):
                        s += J[b, grp, row, 6 * a + k] * J[b, grp, row, 6 * bb + m]
                    wp.atomic_add(A, b, 6 * ca + k, 6 * cb + m, s)


@wp.kernel(enable_backward=False)
def normal_equations_adjoint_kernel(
    J: wp.array(dtype=Any, ndim=4),
    r: wp.array(dtype=Any, ndim=3),
    cols: wp.array(dtype=wp.int32, ndim=2),
    gA: wp.array(dtype=Any, ndim=3),  # (B, 6N, 6N) dL/dA
    gb: wp.array(dtype=Any, ndim=2),  # (B, 6N) dL/db
    dJ: wp.array(dtype=Any, ndim=4),  # out (B, G, g, nb*6)
    dr: wp.array(dtype=Any, ndim=3),  # out (B, G, g)
):
    """Adjoint of A = J^T J, b = J^T r: dJ_row = J_row (gA + gA^T) + r_row gb, dr_row = J_row . gb."""
    b, grp = wp.tid()
    nb = cols.shape[1]
    g = r.shape[2]
    zero = r[b, grp, 0] * type(r[b, grp, 0])(0.0)
    for row in range(g):
        acc_r = zero
        for a in range(nb):
            ca = cols[grp, a]
            for k in range(6):
                s = zero
                if ca >= 0:
                    s = r[b, grp, row] * gb[b, 6 * ca + k]
                    acc_r += J[b, grp, row, 6 * a + k] * gb[b, 6 * ca + k]
                    for bb in range(nb):
                        cb = cols[grp, bb]
                        if cb < 0:
                            continue
                        for m in range(6):
                            s += J[b, grp, row, 6 * bb + m] * (
                                gA[b, 6 * ca + k, 6 * cb + m] + gA[b, 6 * cb + m, 6 * ca + k]
                            )
                dJ[b, grp, row, 6 * a + k] = s
        dr[b, grp, row] = acc_r


@wp.kernel(enable_backward=False)
def block_diagonal_kernel(
    J: wp.array(dtype=Any, ndim=4),
    cols: wp.array(dtype=wp.int32, ndim=2),
    D: wp.array(dtype=Any, ndim=4),  # out, accumulated (B, N, 6, 6): diagonal 6x6 blocks of J^T J
):
    """Block-Jacobi preconditioner blocks (the data-parallel scheme of DeepDeform's PCG solver)."""
    b, grp = wp.tid()
    nb = cols.shape[1]
    g = J.shape[2]
    for a in range(nb):
        ca = cols[grp, a]
        if ca < 0:
            continue
        for bb in range(nb):
            if cols[grp, bb] != ca:
                continue
            for k in range(6):
                for m in range(6):
                    s = J[b, grp, 0, 6 * a + k] * J[b, grp, 0, 6 * bb + m]
                    for row in range(1, g):
                        s += J[b, grp, row, 6 * a + k] * J[b, grp, row, 6 * bb + m]
                    wp.atomic_add(D, b, ca, k, m, s)


@wp.kernel(enable_backward=False)
def jac_vec_kernel(
    J: wp.array(dtype=Any, ndim=4),
    cols: wp.array(dtype=wp.int32, ndim=2),
    v: wp.array(dtype=Any, ndim=2),  # (B, 6N)
    u: wp.array(dtype=Any, ndim=3),  # out (B, G, g) = J v
):
    b, grp = wp.tid()
    nb = cols.shape[1]
    g = J.shape[2]
    for row in range(g):
        s = v[b, 0] * type(v[b, 0])(0.0)
        for a in range(nb):
            ca = cols[grp, a]
            if ca < 0:
                continue
            for k in range(6):
                s += J[b, grp, row, 6 * a + k] * v[b, 6 * ca + k]
        u[b, grp, row] = s


@wp.kernel(enable_backward=False)
def jac_t_vec_kernel(
    J: wp.array(dtype=Any, ndim=4),
    cols: wp.array(dtype=wp.int32, ndim=2),
    u: wp.array(dtype=Any, ndim=3),  # (B, G, g)
    y: wp.array(dtype=Any, ndim=2),  # out, accumulated (B, 6N) += J^T u
):
    b, grp = wp.tid()
    nb = cols.shape[1]
    g = J.shape[2]
    for a in range(nb):
        ca = cols[grp, a]
        if ca < 0:
            continue
        for k in range(6):
            s = u[b, grp, 0] * J[b, grp, 0, 6 * a + k]
            for row in range(1, g):
                s += u[b, grp, row] * J[b, grp, row, 6 * a + k]
            wp.atomic_add(y, b, 6 * ca + k, s)


@wp.kernel(enable_backward=False)
def solve_adjoint_jacobian_kernel(
    J: wp.array(dtype=Any, ndim=4),
    r: wp.array(dtype=Any, ndim=3),
    cols: wp.array(dtype=wp.int32, ndim=2),
    x: wp.array(dtype=Any, ndim=2),  # (B, 6N) forward solution x = -(J^T J + D)^-1 J^T r
    gc: wp.array(dtype=Any, ndim=2),  # (B, 6N) adjoint solution (J^T J + D)^-1 dL/dx
    dJ: wp.array(dtype=Any, ndim=4),  # out (B, G, g, nb*6)
    dr: wp.array(dtype=Any, ndim=3),  # out (B, G, g)
):
    """Matrix-free backward of x = -(J^T J + D)^-1 J^T r (App. B.2 without forming J^T J):
    dL/dJ_row = -((J_row . gc) x + (J_row . x) gc + r_row gc), dL/dr_row = -(J_row . gc)."""
    b, grp = wp.tid()
    nb = cols.shape[1]
    g = J.shape[2]
    for row in range(g):
        zero = r[b, grp, row] * type(r[b, grp, row])(0.0)
        jx = zero
        jg = zero
        for a in range(nb):
            ca = cols[grp, a]
            if ca < 0:
                continue
            for k in range(6):
                jx += J[b, grp, row, 6 * a + k] * x[b, 6 * ca + k]
                jg += J[b, grp, row, 6 * a + k] * gc[b, 6 * ca + k]
        for a in range(nb):
            ca = cols[grp, a]
            for k in range(6):
                val = zero
                if ca >= 0:
                    val = -(jg * x[b, 6 * ca + k] + (jx + r[b, grp, row]) * gc[b, 6 * ca + k])
                dJ[b, grp, row, 6 * a + k] = val
        dr[b, grp, row] = -jg


def _declare_overloads() -> None:
    """Instantiate every generic kernel for float32 and float64 up front.

    Without this, each new instantiation met at run time changes the module's content hash and forces
    a recompilation whose result depends on the order of first use; declared once, the module is
    compiled once and found in the kernel cache afterwards.
    """
    kernels = [data_terms_kernel, arap_terms_kernel, normal_equations_kernel, normal_equations_adjoint_kernel,
               block_diagonal_kernel, jac_vec_kernel, jac_t_vec_kernel, solve_adjoint_jacobian_kernel]
    for kernel in kernels:
        for ft in (wp.float32, wp.float64):
            sig = {}
            for name, ann in kernel.adj.arg_types.items():
                if isinstance(ann, wp.array) and ann.dtype is Any:
                    sig[name] = wp.array(dtype=ft, ndim=ann.ndim)
                elif ann is Any:
                    sig[name] = ft
                else:
                    sig[name] = ann
            wp.overload(kernel, sig)


_declare_overloads()
