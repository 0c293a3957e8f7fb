"""idgate: server-side Korean identity verification through PortOne.

The layers live in the subpackages: `idgate.domain` (pure core), `idgate.adapters`,
`idgate.policies`, `idgate.sandbox` and `idgate.entrypoints` (composition root, HTTP, CLI).
"""

__version__ = "0.1.0"
