"""Amaranth generators of the Tandem accelerator and its one hardware config."""

from .config import DATAFLOWS, HWConfig, load_config
from .systolic import PE, SystolicArray

__all__ = ["DATAFLOWS", "PE", "HWConfig", "SystolicArray", "load_config"]
