"""The configuration file's schema, by concern, and how a file is loaded.

Every model forbids unknown keys, so a typo is an error that names its YAML path rather than a
setting silently ignored. :func:`load_config` turns any problem into a :class:`ConfigError`
whose message names the file, the field path and what is wrong.

``server`` (:mod:`.server`), ``models`` (:mod:`.models`), ``policies`` (:mod:`.policy`, their
methods and embedder in :mod:`.methods`), the file as a whole and its ``routing``
(:mod:`.root`), and reading it (:mod:`.loading`).
"""

from proxy.core.config.loading import (
    format_validation_error, load_config, parse_config, read_yaml, resolve_document, substitute_env,
    validate_mapping,
)
from proxy.core.config.methods import (
    DEFAULT_TARGET_FNR, EmbedderConfig, EmbedderEngine, EmbedderPrecision, ICULConfig, InputClassifierConfig, InputDetectorConfig, MethodConfig,
    OutputFilterConfig, PrefixConfig, ScopeConfig,
)
from proxy.core.config.models import (
    LlamaCppModelConfig, ModelConfig, OpenAIModelConfig, TransformersModelConfig,
)
from proxy.core.config.policy import (
    MAX_REQUEST_DOCUMENT_CHARS, DocumentConfig, ForgetRequestTarget, ForgetTargetConfig,
    PolicyConfig, QAExample, RequestDocumentConfig,
)
from proxy.core.config.root import Config, RoutingConfig
from proxy.core.config.server import ServerConfig, StoreConfig

__all__ = [
    "DEFAULT_TARGET_FNR", "MAX_REQUEST_DOCUMENT_CHARS", "Config", "DocumentConfig", "EmbedderConfig",
    "EmbedderEngine", "EmbedderPrecision", "ForgetRequestTarget", "ForgetTargetConfig",
    "ICULConfig", "InputClassifierConfig",
    "InputDetectorConfig", "LlamaCppModelConfig", "MethodConfig", "ModelConfig",
    "OpenAIModelConfig", "OutputFilterConfig", "PolicyConfig", "PrefixConfig", "QAExample",
    "RequestDocumentConfig", "RoutingConfig", "ScopeConfig", "ServerConfig", "StoreConfig", "TransformersModelConfig",
    "format_validation_error", "load_config", "parse_config", "read_yaml", "resolve_document",
    "substitute_env", "validate_mapping",
]
