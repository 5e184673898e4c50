"""Exceptions with messages meant for the person running the workflow."""


class LffoodError(Exception):
    """Base class: the message says what went wrong, where, and what to do."""


class ConfigError(LffoodError):
    """The configuration is invalid (names the file, the key and the fix)."""


class DataError(LffoodError):
    """An input data file is missing, corrupt or in an unexpected format."""


class IntegrityError(DataError):
    """An artifact does not match its integrity manifest (lffood.integrity): names the file, what
    differs and the command that rebuilds it."""


class SchemaError(DataError):
    """An HDF5 file does not follow lffood.h5schema."""


class CollapseError(LffoodError):
    """Training drove the model to chance accuracy or to zero features."""
