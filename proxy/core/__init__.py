"""The bottom layer: the config schema, errors, the registry, redaction, the packaged models'
locations and the wire-free types. It imports nothing from ``filters``, ``icul``,
``benchmarks`` or the rest of ``proxy``; everything else may import it (docs/ARCHITECTURE.md).
"""
