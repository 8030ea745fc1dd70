"""torch <-> Warp bridge: autograd Functions launching the kernels in ``warp_kernels/``.

See :mod:`nrsfm_kit.kernels._bridge` for the pattern; each topic module keeps a pure-torch reference
of the same maths beside its Function.
"""
