"""Motion modules in pure torch: file formats (detect, convert, validate), the spec, and typed errors.

Importing this package loads no model and touches no file.
"""
from .errors import KeyLayoutError, MotionModuleError, UnreadableFileError, WrongFileKindError
from .formats import detect, identify_wrong_kind, to_internal, validate
from .io import load_motion_module, read_config, read_state_dict
from .spec import MotionModuleSpec, expected_shapes, module_prefixes, sinusoidal_pe, standard_spec

__all__ = [
    "KeyLayoutError",
    "MotionModuleError",
    "MotionModuleSpec",
    "UnreadableFileError",
    "WrongFileKindError",
    "detect",
    "expected_shapes",
    "identify_wrong_kind",
    "load_motion_module",
    "module_prefixes",
    "read_config",
    "read_state_dict",
    "sinusoidal_pe",
    "standard_spec",
    "to_internal",
    "validate",
]
