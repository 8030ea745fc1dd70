"""Warp kernels of the non-rigid Gauss-Newton solver: residual terms, Jacobians, normal equations.

Maths: Neural Non-Rigid Tracking (Bozic, Palafox et al., NeurIPS 2020) eq. 8-11 and App. B.1; the
DeepDeform / DynamicFusion data terms on the same machinery.

**Point terms** (every residual that depends on a warped point Q(p)) are linearised in three steps,
so that a new term only writes the middle one:

1. :func:`warp_linearize_kernel` (shared): Q(p) = sum_a alpha_a (R_a (p - v_a) + v_a + t_a) (eq. 2)
   and d_a = R_a (p - v_a) for the 4 anchors of each point;
2. a term kernel: its residual rows r(Q) and their gradients g = dr/dQ (3-vectors), e.g.
   :func:`reprojection_residual_kernel` (eq. 9), :func:`depth_residual_kernel` (eq. 10),
   :func:`point_residual_kernel`, :func:`plane_residual_kernel`, :func:`image_residual_kernel`
   (photometric, silhouette, heatmap: any bilinearly sampled 2D map);
3. :func:`point_jacobian_kernel` (shared): the chain rule through the warp (App. B.1). With rotation
   increments on top of R_a (R_a <- exp(eps_a^) R_a): dQ/d eps_a = -alpha_a [d_a]^, dQ/d t_a = alpha_a I,
   so a row with gradient g has the block (alpha_a d_a x g, alpha_a g) for anchor a.

**ARAP** rows per edge (eq. 11): s_ij (R_i (v_j - v_i) + v_i + t_i - v_j - t_j), s_ij = sqrt(lambda w_ij).

**Block-sparse layout** of a residual family: ``J`` (B, G, g, nb*6), ``r`` (B, G, g) and ``cols``
(G, nb) node ids (int64, -1 = unused): group = one point (nb = 4 anchors) or one edge (nb = 2).

**Normal equations** A = J^T J, b = J^T r: :func:`pair_gram_kernel` / :func:`node_rhs_kernel` reduce
the per-group 6x6 products over each (node, node) pair by a precomputed segmented (CSR) layout: one
thread per output entry, no atomics, deterministic on CUDA too. :func:`normal_equations_kernel` is the
plain scatter with atomics (kept as the simple reference and for comparison in the benchmark).

Residual kernels are differentiated by Warp's generated adjoints (launched with ``adjoint=True`` by the
torch bridge); the assembly / product kernels are linear and have hand-written adjoints.
No torch import in this module.
"""

from __future__ import annotations

from typing import Any

import warp as wp

from warp_kernels.types import INDEX, declare_float_overloads

NUM_ANCHORS = 4  # anchors per point (DeformationGraph.pixel_anchors holds A = 4); the bridge pads fewer


# ==================================================================================================
# point terms: shared warp linearisation and chain rule
# ==================================================================================================


@wp.kernel
def warp_linearize_kernel(
    points: wp.array2d(dtype=Any),  # (B, P) vec3 source points, metres
    anchors: wp.array2d(dtype=INDEX),  # (P, 4) node ids, -1 padding
    anchor_w: wp.array2d(dtype=Any),  # (P, 4) skinning weights alpha
    nodes: wp.array(dtype=Any),  # (N,) vec3 node positions v, metres
    rot: wp.array2d(dtype=Any),  # (B, N) mat33 current rotations R
    trans: wp.array2d(dtype=Any),  # (B, N) vec3 current translations t, metres
    q: wp.array2d(dtype=Any),  # out (B, P) vec3 warped points Q(p)
    rd: wp.array3d(dtype=Any),  # out (B, P, 4) vec3 d_a = R_a (p - v_a) (0 on padding)
):
    b, p = wp.tid()
    x = points[b, p]
    acc = x * x[0] * type(x[0])(0.0)
    for a in range(4):
        n = anchors[p, a]
        d = acc * type(x[0])(0.0)
        if n >= INDEX(0):
            d = rot[b, n] @ (x - nodes[n])
            acc = acc + anchor_w[p, a] * (d + nodes[n] + trans[b, n])
        rd[b, p, a] = d
    q[b, p] = acc


@wp.kernel
def point_jacobian_kernel(
    g: wp.array3d(dtype=Any),  # (B, P, m) vec3 row gradients dr/dQ
    rd: wp.array3d(dtype=Any),  # (B, P, 4) vec3 d_a = R_a (p - v_a)
    anchors: wp.array2d(dtype=INDEX),  # (P, 4)
    anchor_w: wp.array2d(dtype=Any),  # (P, 4)
    J: wp.array4d(dtype=Any),  # out (B, P, m, 24): per anchor (alpha d_a x g, alpha g)
):
    b, p, row = wp.tid()
    gv = g[b, p, row]
    for a in range(4):
        al = gv[0] * type(gv[0])(0.0)
        if anchors[p, a] >= INDEX(0):
            al = anchor_w[p, a]
        c = wp.cross(rd[b, p, a], gv) * al
        t = gv * al
        J[b, p, row, 6 * a + 0] = c[0]
        J[b, p, row, 6 * a + 1] = c[1]
        J[b, p, row, 6 * a + 2] = c[2]
        J[b, p, row, 6 * a + 3] = t[0]
        J[b, p, row, 6 * a + 4] = t[1]
        J[b, p, row, 6 * a + 5] = t[2]


# ==================================================================================================
# point-term residuals r(Q) and gradients g = dr/dQ
# ==================================================================================================


@wp.func
def project_gradients(x: Any, fx: Any, fy: Any):
    """d pi / dQ of the pinhole projection pi(x) = (fx x/z + cx, fy y/z + cy): rows du/dQ, dv/dQ."""
    iz = type(fx)(1.0) / x[2]
    du = type(x)(fx * iz, fx * type(fx)(0.0), -fx * x[0] * iz * iz)
    dv = type(x)(fy * type(fy)(0.0), fy * iz, -fy * x[1] * iz * iz)
    return du, dv


@wp.kernel
def reprojection_residual_kernel(
    q: wp.array2d(dtype=Any),  # (B, P) vec3 warped points
    corr: wp.array2d(dtype=Any),  # (B, P) vec2 target pixels c_u (u = column, v = row)
    w: wp.array2d(dtype=Any),  # (B, P) row weights sqrt(lambda_2D) w_u (0 = off)
    intr: wp.array2d(dtype=Any),  # (B, 4) fx, fy, cx, cy
    min_depth: Any,  # rows are zero for warped points with z <= min_depth (behind the camera)
    r: wp.array3d(dtype=Any),  # out (B, P, 2)
    g: wp.array3d(dtype=Any),  # out (B, P, 2) vec3
):
    """2D reprojection (eq. 9): w (pi(Q) - c_u)."""
    b, p = wp.tid()
    x = q[b, p]
    zero = min_depth * type(min_depth)(0.0)
    r0 = zero
    r1 = zero
    g0 = x * zero
    g1 = x * zero
    if x[2] > min_depth:
        fx = intr[b, 0]
        fy = intr[b, 1]
        wb = w[b, p]
        c = corr[b, p]
        du, dv = project_gradients(x, fx, fy)
        r0 = wb * (fx * x[0] / x[2] + intr[b, 2] - c[0])
        r1 = wb * (fy * x[1] / x[2] + intr[b, 3] - c[1])
        g0 = wb * du
        g1 = wb * dv
    r[b, p, 0] = r0
    r[b, p, 1] = r1
    g[b, p, 0] = g0
    g[b, p, 1] = g1


@wp.kernel
def depth_residual_kernel(
    q: wp.array2d(dtype=Any),  # (B, P) vec3
    target_z: wp.array2d(dtype=Any),  # (B, P) target depth sampled at c_u, metres
    w: wp.array2d(dtype=Any),  # (B, P) sqrt(lambda_depth) w_u
    r: wp.array3d(dtype=Any),  # out (B, P, 1)
    g: wp.array3d(dtype=Any),  # out (B, P, 1) vec3
):
    """Depth (eq. 10): w (Q_z - D_t(c_u))."""
    b, p = wp.tid()
    x = q[b, p]
    wb = w[b, p]
    r[b, p, 0] = wb * (x[2] - target_z[b, p])
    g[b, p, 0] = type(x)(wb * type(wb)(0.0), wb * type(wb)(0.0), wb)


@wp.kernel
def point_residual_kernel(
    q: wp.array2d(dtype=Any),  # (B, P) vec3
    target: wp.array2d(dtype=Any),  # (B, P) vec3 target points y, metres
    w: wp.array2d(dtype=Any),  # (B, P) sqrt(lambda) w
    r: wp.array3d(dtype=Any),  # out (B, P, 3)
    g: wp.array3d(dtype=Any),  # out (B, P, 3) vec3
):
    """Point-to-point: w (Q - y), three rows."""
    b, p = wp.tid()
    wb = w[b, p]
    d = (q[b, p] - target[b, p]) * wb
    zero = wb * type(wb)(0.0)
    r[b, p, 0] = d[0]
    r[b, p, 1] = d[1]
    r[b, p, 2] = d[2]
    g[b, p, 0] = type(d)(wb, zero, zero)
    g[b, p, 1] = type(d)(zero, wb, zero)
    g[b, p, 2] = type(d)(zero, zero, wb)


@wp.kernel
def plane_residual_kernel(
    q: wp.array2d(dtype=Any),  # (B, P) vec3
    target: wp.array2d(dtype=Any),  # (B, P) vec3 target points y
    normals: wp.array2d(dtype=Any),  # (B, P) vec3 target normals n
    w: wp.array2d(dtype=Any),  # (B, P)
    r: wp.array3d(dtype=Any),  # out (B, P, 1)
    g: wp.array3d(dtype=Any),  # out (B, P, 1) vec3
):
    """Point-to-plane: w n . (Q - y)."""
    b, p = wp.tid()
    wb = w[b, p]
    n = normals[b, p]
    r[b, p, 0] = wb * wp.dot(n, q[b, p] - target[b, p])
    g[b, p, 0] = n * wb


@wp.kernel
def image_residual_kernel(
    q: wp.array2d(dtype=Any),  # (B, P) vec3 warped points
    image: wp.array4d(dtype=Any),  # (B*M, H, W, C) maps (M per frame pair), channels last
    map_index: wp.array(dtype=INDEX),  # (P,) which of the M maps each point samples
    offset: wp.array2d(dtype=Any),  # (B, P) vec2 pixel of the map's (0, 0) in the image (patch corner)
    target: wp.array3d(dtype=Any),  # (B, P, C) value the map should take at the projected point
    w: wp.array2d(dtype=Any),  # (B, P) sqrt(lambda) w
    intr: wp.array2d(dtype=Any),  # (B, 4)
    num_maps: int,
    min_depth: Any,
    outside: Any,  # value of the maps outside their pixels (used when use_outside == 1)
    use_outside: int,  # 0: rows off outside the map / behind the camera; 1: I = outside there (no gradient)
    r: wp.array3d(dtype=Any),  # out (B, P, C)
    g: wp.array3d(dtype=Any),  # out (B, P, C) vec3
):
    """Image-sampled term: w (I(pi(Q) - o) - c), I bilinearly sampled, with its image-gradient Jacobian.

    The photometric (I = target colours), silhouette (I = distance transform of the target mask,
    c = 0) and heatmap (I = H, c = 1: the residual -(1 - H(pi(Q))) of DeepDeform sec. 4.2) terms.
    Points projecting outside the map's pixel centres [0, W-1] x [0, H-1] or behind the camera give
    zero rows, or with ``use_outside`` the constant residual w (outside - c) without gradient (a heatmap
    is 0 outside its patch: leaving the patch must not lower the energy).
    """
    b, p = wp.tid()
    x = q[b, p]
    C = image.shape[3]
    Hh = image.shape[1]
    Ww = image.shape[2]
    zero = min_depth * type(min_depth)(0.0)
    one = type(min_depth)(1.0)
    inside = wp.int32(0)
    u = zero
    v = zero
    if x[2] > min_depth:
        u = intr[b, 0] * x[0] / x[2] + intr[b, 2] - offset[b, p][0]
        v = intr[b, 1] * x[1] / x[2] + intr[b, 3] - offset[b, p][1]
        if u >= zero and u <= type(u)(float(Ww - 1)) and v >= zero and v <= type(v)(float(Hh - 1)):
            inside = wp.int32(1)
    if inside == 0:
        for c in range(C):
            rc = zero
            if use_outside == 1:
                rc = w[b, p] * (outside - target[b, p, c])
            r[b, p, c] = rc
            g[b, p, c] = x * zero
        return
    m = int(b) * num_maps + int(map_index[p])
    u0 = wp.min(int(wp.floor(u)), wp.max(Ww - 2, 0))
    v0 = wp.min(int(wp.floor(v)), wp.max(Hh - 2, 0))
    u1 = wp.min(u0 + 1, Ww - 1)
    v1 = wp.min(v0 + 1, Hh - 1)
    fu = u - type(u)(float(u0))
    fv = v - type(v)(float(v0))
    du, dv = project_gradients(x, intr[b, 0], intr[b, 1])
    wb = w[b, p]
    for c in range(C):
        i00 = image[m, v0, u0, c]
        i01 = image[m, v0, u1, c]
        i10 = image[m, v1, u0, c]
        i11 = image[m, v1, u1, c]
        val = (one - fv) * ((one - fu) * i00 + fu * i01) + fv * ((one - fu) * i10 + fu * i11)
        gu = (one - fv) * (i01 - i00) + fv * (i11 - i10)
        gv = (one - fu) * (i10 - i00) + fu * (i11 - i01)
        r[b, p, c] = wb * (val - target[b, p, c])
        g[b, p, c] = (du * gu + dv * gv) * wb


# ==================================================================================================
# ARAP
# ==================================================================================================


@wp.kernel
def arap_terms_kernel(
    nodes: wp.array(dtype=Any),  # (N,) vec3 metres
    edges: wp.array2d(dtype=INDEX),  # (N, K) neighbour ids, -1 padding
    scale: wp.array2d(dtype=Any),  # (N, K) residual scale sqrt(lambda_reg * w_ij)
    rot: wp.array2d(dtype=Any),  # (B, N) mat33
    trans: wp.array2d(dtype=Any),  # (B, N) vec3
    r: wp.array3d(dtype=Any),  # out (B, N*K, 3)
    J: wp.array4d(dtype=Any),  # out (B, N*K, 3, 12): columns (eps_i, t_i, eps_j, t_j)
):
    """ARAP residual r_ij = s (R_i (v_j - v_i) + v_i + t_i - v_j - t_j) (eq. 11) and its Jacobian."""
    b, i, k = wp.tid()
    grp = i * edges.shape[1] + k
    j = edges[i, k]
    s = scale[i, k]
    zero = s * type(s)(0.0)
    if j < INDEX(0):
        for c in range(3):
            r[b, grp, c] = zero
            for col in range(12):
                J[b, grp, c, col] = zero
        return
    d = nodes[j] - nodes[i]
    a = rot[b, i] @ d
    res = (a - d + trans[b, i] - trans[b, j]) * s
    # d (exp(eps^) a) / d eps = -[a]^ ; rows of -[a]^: (0, a2, -a1), (-a2, 0, a0), (a1, -a0, 0)
    sa = a * s
    for c in range(3):
        r[b, grp, c] = res[c]
    J[b, grp, 0, 0] = zero
    J[b, grp, 0, 1] = sa[2]
    J[b, grp, 0, 2] = -sa[1]
    J[b, grp, 1, 0] = -sa[2]
    J[b, grp, 1, 1] = zero
    J[b, grp, 1, 2] = sa[0]
    J[b, grp, 2, 0] = sa[1]
    J[b, grp, 2, 1] = -sa[0]
    J[b, grp, 2, 2] = zero
    for c in range(3):
        for col in range(3):
            e = zero
            if c == col:
                e = s
            J[b, grp, c, 3 + col] = e
            J[b, grp, c, 6 + col] = zero
            J[b, grp, c, 9 + col] = -e


# ==================================================================================================
# normal equations and block products (linear in J, r; hand-written adjoints)
# ==================================================================================================


@wp.kernel(enable_backward=False)
def pair_gram_kernel(
    J: wp.array4d(dtype=Any),  # (B, G, g, nb*6)
    ent_group: wp.array(dtype=INDEX),  # (E,) group of each entry, sorted by node pair
    ent_a: wp.array(dtype=INDEX),  # (E,) its column block a
    ent_c: wp.array(dtype=INDEX),  # (E,) its column block c
    seg: wp.array(dtype=INDEX),  # (U+1,) CSR offsets: entries of pair u are seg[u] .. seg[u+1]-1
    pair_i: wp.array(dtype=INDEX),  # (U,) node i of pair u
    pair_j: wp.array(dtype=INDEX),  # (U,) node j of pair u
    A: wp.array3d(dtype=Any),  # out, accumulated (B, 6N, 6N): A[6i+k, 6j+l] += sum J_a[:, k] J_c[:, l]
):
    """Segmented J^T J: one thread per (pair, k, l) entry sums its groups' products; no atomics."""
    b, u, kl = wp.tid()
    k = kl // 6
    l = kl - 6 * k
    rows = J.shape[2]
    s = J[b, 0, 0, 0] * type(J[b, 0, 0, 0])(0.0)
    for e in range(int(seg[u]), int(seg[u + 1])):
        grp = int(ent_group[e])
        ca = 6 * int(ent_a[e]) + k
        cc = 6 * int(ent_c[e]) + l
        for row in range(rows):
            s += J[b, grp, row, ca] * J[b, grp, row, cc]
    i = int(pair_i[u])
    j = int(pair_j[u])
    A[b, 6 * i + k, 6 * j + l] = A[b, 6 * i + k, 6 * j + l] + s


@wp.kernel(enable_backward=False)
def node_rhs_kernel(
    J: wp.array4d(dtype=Any),  # (B, G, g, nb*6)
    r: wp.array3d(dtype=Any),  # (B, G, g)
    ent_group: wp.array(dtype=INDEX),  # (E,) group of each (group, block) entry, sorted by node
    ent_a: wp.array(dtype=INDEX),  # (E,) its column block
    seg: wp.array(dtype=INDEX),  # (U+1,) CSR offsets per node u
    node: wp.array(dtype=INDEX),  # (U,) node id of segment u
    bvec: wp.array2d(dtype=Any),  # out, accumulated (B, 6N): b[6n+k] += sum J_a[:, k] . r
):
    """Segmented J^T r: one thread per (node, k); no atomics."""
    b, u, k = wp.tid()
    rows = J.shape[2]
    s = r[b, 0, 0] * type(r[b, 0, 0])(0.0)
    for e in range(int(seg[u]), int(seg[u + 1])):
        grp = int(ent_group[e])
        ca = 6 * int(ent_a[e]) + k
        for row in range(rows):
            s += J[b, grp, row, ca] * r[b, grp, row]
    n = 6 * int(node[u]) + k
    bvec[b, n] = bvec[b, n] + s


@wp.kernel(enable_backward=False)
def normal_equations_kernel(
    J: wp.array4d(dtype=Any),  # (B, G, g, nb*6)
    r: wp.array3d(dtype=Any),  # (B, G, g)
    cols: wp.array2d(dtype=INDEX),  # (G, nb)
    A: wp.array3d(dtype=Any),  # out, accumulated (B, 6N, 6N): J^T J
    bvec: wp.array2d(dtype=Any),  # out, accumulated (B, 6N): J^T r
):
    """Scatter-add one group's J^T J (nb x nb blocks of 6x6) and J^T r with scalar atomics."""
    b, grp = wp.tid()
    nb = cols.shape[1]
    g = r.shape[2]
    for a in range(nb):
        ca = int(cols[grp, a])
        if ca < 0:
            continue
        for k in range(6):
            sb = r[b, grp, 0] * J[b, grp, 0, 6 * a + k]
            for row in range(1, g):
                sb += r[b, grp, row] * J[b, grp, row, 6 * a + k]
            wp.atomic_add(bvec, b, 6 * ca + k, sb)
            for bb in range(nb):
                cb = int(cols[grp, bb])
                if cb < 0:
                    continue
                for m in range(6):
                    s = J[b, grp, 0, 6 * a + k] * J[b, grp, 0, 6 * bb + m]
                    for row in range(1, g):
                        s += J[b, grp, row, 6 * a + k] * J[b, grp, row, 6 * bb + m]
                    wp.atomic_add(A, b, 6 * ca + k, 6 * cb + m, s)


@wp.kernel(enable_backward=False)
def normal_equations_adjoint_kernel(
    J: wp.array4d(dtype=Any),
    r: wp.array3d(dtype=Any),
    cols: wp.array2d(dtype=INDEX),
    gA: wp.array3d(dtype=Any),  # (B, 6N, 6N) dL/dA
    gb: wp.array2d(dtype=Any),  # (B, 6N) dL/db
    dJ: wp.array4d(dtype=Any),  # out (B, G, g, nb*6)
    dr: wp.array3d(dtype=Any),  # out (B, G, g)
):
    """Adjoint of A = J^T J, b = J^T r: dJ_row = J_row (gA + gA^T) + r_row gb, dr_row = J_row . gb
    (one thread per group: every output entry is written by one thread)."""
    b, grp = wp.tid()
    nb = cols.shape[1]
    g = r.shape[2]
    zero = r[b, grp, 0] * type(r[b, grp, 0])(0.0)
    for row in range(g):
        acc_r = zero
        for a in range(nb):
            ca = int(cols[grp, a])
            for k in range(6):
                s = zero
                if ca >= 0:
                    s = r[b, grp, row] * gb[b, 6 * ca + k]
                    acc_r += J[b, grp, row, 6 * a + k] * gb[b, 6 * ca + k]
                    for bb in range(nb):
                        cb = int(cols[grp, bb])
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
    J: wp.array4d(dtype=Any),
    cols: wp.array2d(dtype=INDEX),
    D: wp.array4d(dtype=Any),  # out, accumulated (B, N, 6, 6): diagonal 6x6 blocks of J^T J
):
    """Block-Jacobi preconditioner blocks (the data-parallel scheme of DeepDeform's PCG solver)."""
    b, grp = wp.tid()
    nb = cols.shape[1]
    g = J.shape[2]
    for a in range(nb):
        ca = int(cols[grp, a])
        if ca < 0:
            continue
        for bb in range(nb):
            if int(cols[grp, bb]) != ca:
                continue
            for k in range(6):
                for m in range(6):
                    s = J[b, grp, 0, 6 * a + k] * J[b, grp, 0, 6 * bb + m]
                    for row in range(1, g):
                        s += J[b, grp, row, 6 * a + k] * J[b, grp, row, 6 * bb + m]
                    wp.atomic_add(D, b, ca, k, m, s)


@wp.kernel(enable_backward=False)
def jac_vec_kernel(
    J: wp.array4d(dtype=Any),
    cols: wp.array2d(dtype=INDEX),
    v: wp.array2d(dtype=Any),  # (B, 6N)
    u: wp.array3d(dtype=Any),  # out (B, G, g) = J v
):
    b, grp = wp.tid()
    nb = cols.shape[1]
    g = J.shape[2]
    for row in range(g):
        s = v[b, 0] * type(v[b, 0])(0.0)
        for a in range(nb):
            ca = int(cols[grp, a])
            if ca < 0:
                continue
            for k in range(6):
                s += J[b, grp, row, 6 * a + k] * v[b, 6 * ca + k]
        u[b, grp, row] = s


@wp.kernel(enable_backward=False)
def jac_t_vec_kernel(
    J: wp.array4d(dtype=Any),
    cols: wp.array2d(dtype=INDEX),
    u: wp.array3d(dtype=Any),  # (B, G, g)
    y: wp.array2d(dtype=Any),  # out, accumulated (B, 6N) += J^T u
):
    b, grp = wp.tid()
    nb = cols.shape[1]
    g = J.shape[2]
    for a in range(nb):
        ca = int(cols[grp, a])
        if ca < 0:
            continue
        for k in range(6):
            s = u[b, grp, 0] * J[b, grp, 0, 6 * a + k]
            for row in range(1, g):
                s += u[b, grp, row] * J[b, grp, row, 6 * a + k]
            wp.atomic_add(y, b, 6 * ca + k, s)


@wp.kernel(enable_backward=False)
def solve_adjoint_jacobian_kernel(
    J: wp.array4d(dtype=Any),
    r: wp.array3d(dtype=Any),
    cols: wp.array2d(dtype=INDEX),
    x: wp.array2d(dtype=Any),  # (B, 6N) forward solution x = -(J^T J + D)^-1 J^T r
    gc: wp.array2d(dtype=Any),  # (B, 6N) adjoint solution (J^T J + D)^-1 dL/dx
    dJ: wp.array4d(dtype=Any),  # out (B, G, g, nb*6)
    dr: wp.array3d(dtype=Any),  # out (B, G, g)
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
            ca = int(cols[grp, a])
            if ca < 0:
                continue
            for k in range(6):
                jx += J[b, grp, row, 6 * a + k] * x[b, 6 * ca + k]
                jg += J[b, grp, row, 6 * a + k] * gc[b, 6 * ca + k]
        for a in range(nb):
            ca = int(cols[grp, a])
            for k in range(6):
                val = zero
                if ca >= 0:
                    val = -(jg * x[b, 6 * ca + k] + (jx + r[b, grp, row]) * gc[b, 6 * ca + k])
                dJ[b, grp, row, 6 * a + k] = val
        dr[b, grp, row] = -jg


# ==================================================================================================
# float32 / float64 instantiations, declared once (the module compiles once and is cached)
# ==================================================================================================


def _vector_signatures():
    arr = wp.array

    def lin(ft):
        return [arr(dtype=ft.vec3, ndim=2), arr(dtype=INDEX, ndim=2), arr(dtype=ft.scalar, ndim=2),
                arr(dtype=ft.vec3), arr(dtype=ft.mat33, ndim=2), arr(dtype=ft.vec3, ndim=2),
                arr(dtype=ft.vec3, ndim=2), arr(dtype=ft.vec3, ndim=3)]

    def chain(ft):
        return [arr(dtype=ft.vec3, ndim=3), arr(dtype=ft.vec3, ndim=3), arr(dtype=INDEX, ndim=2),
                arr(dtype=ft.scalar, ndim=2), arr(dtype=ft.scalar, ndim=4)]

    def v3(ft, n=2):
        return arr(dtype=ft.vec3, ndim=n)

    def s(ft, n):
        return arr(dtype=ft.scalar, ndim=n)

    return {
        warp_linearize_kernel: lin,
        point_jacobian_kernel: chain,
        reprojection_residual_kernel: lambda ft: [v3(ft), arr(dtype=ft.vec2, ndim=2), s(ft, 2), s(ft, 2),
                                                  ft.scalar, s(ft, 3), v3(ft, 3)],
        depth_residual_kernel: lambda ft: [v3(ft), s(ft, 2), s(ft, 2), s(ft, 3), v3(ft, 3)],
        point_residual_kernel: lambda ft: [v3(ft), v3(ft), s(ft, 2), s(ft, 3), v3(ft, 3)],
        plane_residual_kernel: lambda ft: [v3(ft), v3(ft), v3(ft), s(ft, 2), s(ft, 3), v3(ft, 3)],
        image_residual_kernel: lambda ft: [v3(ft), s(ft, 4), arr(dtype=INDEX), arr(dtype=ft.vec2, ndim=2),
                                           s(ft, 3), s(ft, 2), s(ft, 2), int, ft.scalar, ft.scalar, int, s(ft, 3),
                                           v3(ft, 3)],
        arap_terms_kernel: lambda ft: [arr(dtype=ft.vec3), arr(dtype=INDEX, ndim=2), s(ft, 2),
                                       arr(dtype=ft.mat33, ndim=2), v3(ft), s(ft, 3), s(ft, 4)],
    }


for _kernel, _sig in _vector_signatures().items():
    declare_float_overloads(_kernel, signature=_sig)
declare_float_overloads(pair_gram_kernel, node_rhs_kernel, normal_equations_kernel, normal_equations_adjoint_kernel,
                        block_diagonal_kernel, jac_vec_kernel, jac_t_vec_kernel, solve_adjoint_jacobian_kernel)
