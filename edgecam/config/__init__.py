"""config.yaml: the typed sections (``sections``, ``events``), the value rules (``rules``), reading a file
with errors that name file, line and key (``load``, ``errors``), and watching it for changes (``watch``).

Importing this package pulls in pydantic and PyYAML only: no OpenCV, scipy or TFLite runtime, so the
read-only commands (``check-config``, ``models``, ``password``) stay fast.
"""

from edgecam.config.errors import ConfigError, ConfigIssue
from edgecam.config.load import LoadedConfig, load_config, parse_config
from edgecam.config.sections import Config

__all__ = ["Config", "ConfigError", "ConfigIssue", "LoadedConfig", "load_config", "parse_config"]
