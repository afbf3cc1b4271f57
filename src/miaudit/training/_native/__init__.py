"""The engine's compiled kernels: each C file beside the Python module that declares its contract.

* ``adam.c`` / :mod:`~miaudit.training._native.adam`: the fused Adam step of the stacked path and
  the Adam constants every path uses.
* ``gauss.c`` / :mod:`~miaudit.training._native.gauss`: DP-SGD's Gaussian noise (Philox and
  Box-Muller in float32; :mod:`miaudit.training.noise` states the algorithm).
* ``mlp1.c`` / :mod:`~miaudit.training._native.mlp1`: whole training steps of a one-hidden-layer
  network on AMX (the fused path).
* ``adam_math.h``: the bf16 conversions and the Adam element both C files share.
* :mod:`~miaudit.training._native.contract`: how a contract is written and checked.

A contract lists each C parameter in prototype order with its dtype and shape expression, the ABI
number the library must report, and the size rules. :mod:`miaudit.training.native` builds the
libraries and gives each function the ctypes signature its contract declares; every buffer is
checked against the contract once, before its pointer crosses into C.
"""
