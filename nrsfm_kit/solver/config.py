"""Configuration of the non-rigid Gauss-Newton solver, with the papers' / reference code's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from nrsfm_kit.utils.checks import check_positive

_SOLVERS = ("dense", "pcg")
_METHODS = ("gn", "lm")
_BACKWARDS = ("unrolled", "implicit")
_CG_BACKWARDS = ("adjoint", "unrolled")
_BACKENDS = ("warp", "torch")
_ASSEMBLIES = ("auto", "blocks", "segmented", "atomic", "reference")


@dataclass
class EnergyTerms:
    """Weights lambda of the energy terms (eq. 8): E = sum_term lambda_term E_term.

    Each residual is multiplied by sqrt(lambda_term) and by the correspondence weight w_u, so w_u
    enters the energy squared (eq. 9-10).
    """

    lambda_2d: float = 0.001  # eq. 9, NeuralTracking gn_data_flow = 0.001 (pixels^2)
    lambda_depth: float = 1.0  # eq. 10, NeuralTracking gn_data_depth = 1.0 (metres^2)
    lambda_arap: float = 1.0  # eq. 11, NeuralTracking gn_arap = 1.0
    # DynamicFusion / DeepDeform data terms on the same machinery (off in Neural Non-Rigid Tracking)
    lambda_point: float = 0.0  # dense point-to-point ||Q(p) - y||^2, y = target point at c_u
    lambda_plane: float = 0.0  # dense point-to-plane (n . (Q(p) - y))^2, needs target normals
    lambda_sparse: float = 0.0  # sparse feature matches, point-to-point (DeepDeform sparse term)
    use_edge_weights: bool = False  # NeuralTracking gn_use_edge_weighting = False

    def __post_init__(self) -> None:
        for name in ("lambda_2d", "lambda_depth", "lambda_arap", "lambda_point", "lambda_plane", "lambda_sparse"):
            check_positive(f"terms.{name}", getattr(self, name), strict=False)


@dataclass
class SolverConfig:
    """Optimiser settings. Defaults follow the NeuralTracking reference code unless noted."""

    method: str = "lm"  # "lm": damped normal equations (reference: A + lm_factor I); "gn": undamped
    max_iter: int = 3  # NeuralTracking gn_num_iter = 3
    damping: float = 0.1  # NeuralTracking gn_lm_factor = 0.1, added to the diagonal of J^T J
    adaptive_damping: bool = False  # classic LM: reject steps that raise E, damping *= / /= factor
    damping_factor: float = 10.0  # Marquardt's factor for the adaptive schedule
    tol: float | None = None  # stop when every pair's relative energy decrease is below tol
    linear_solver: str = "dense"  # "dense" (Cholesky, App. B.2 backward) or "pcg" (matrix-free)
    cg_max_iter: int = 200  # PCG iterations per linear solve (DeepDeform's GPU solver uses a few 10s)
    cg_tol: float = 1e-7  # PCG stops at ||residual|| <= cg_tol ||rhs||
    cg_backward: str = "adjoint"  # "adjoint": solve the adjoint system with PCG; "unrolled": autograd
    backward: str = "unrolled"  # "unrolled": through all iterations; "implicit": implicit function thm
    backend: str = "warp"  # "warp" kernels or the pure-torch "torch" reference (same maths)
    # dense J^T J assembly: "blocks" (per-group 6x6 products by batched matmul, reduced per node pair by a
    # sparse CSR product: torch, multi-threaded), "segmented" (the same reduction as a Warp kernel, one thread
    # per entry, no atomics), "atomic" (Warp scalar atomics), "reference" (torch scalar index_add);
    # "auto": "blocks" on CPU and "segmented" on CUDA with the warp backend, "reference" with the torch one
    assembly: str = "auto"
    min_cluster_correspondences: int = 2000  # NeuralTracking gn_min_num_correspondences_per_cluster
    min_depth: float = 1e-3  # metres; 2D residuals of warped points closer than this are masked
    jitter: float = 1e-8  # added to the diagonal so that "gn" stays solvable on flat directions

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("method", self.method, _METHODS),
            ("linear_solver", self.linear_solver, _SOLVERS),
            ("backward", self.backward, _BACKWARDS),
            ("cg_backward", self.cg_backward, _CG_BACKWARDS),
            ("backend", self.backend, _BACKENDS),
            ("assembly", self.assembly, _ASSEMBLIES),
        ):
            if value not in allowed:
                raise ValueError(f"{name}: expected one of {list(allowed)}, found {value!r}")
        if not isinstance(self.max_iter, int) or self.max_iter < 0:
            raise ValueError(f"max_iter: expected an int >= 0, found {self.max_iter!r}")
        if not isinstance(self.cg_max_iter, int) or self.cg_max_iter < 1:
            raise ValueError(f"cg_max_iter: expected an int >= 1, found {self.cg_max_iter!r}")
        if not isinstance(self.min_cluster_correspondences, int) or self.min_cluster_correspondences < 0:
            raise ValueError(
                f"min_cluster_correspondences: expected an int >= 0, found {self.min_cluster_correspondences!r}"
            )
        check_positive("damping", self.damping, strict=False)
        check_positive("damping_factor", self.damping_factor)
        check_positive("cg_tol", self.cg_tol)
        check_positive("min_depth", self.min_depth)
        check_positive("jitter", self.jitter, strict=False)
        if self.tol is not None:
            check_positive("tol", self.tol)
        if self.damping_factor <= 1:
            raise ValueError(f"damping_factor: expected a value > 1, found {self.damping_factor!r}")
