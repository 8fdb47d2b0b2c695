"""The one error hierarchy: every error the user can cause, each with a one-line message."""

from __future__ import annotations


class VramcalcError(Exception):
    """Base class: the CLI prints str(error) on one line and exits with `exit_code`."""

    exit_code = 2


class SpecError(VramcalcError):
    """A model, GPU or workload value is invalid."""


class CatalogError(VramcalcError):
    """A catalog directory or file cannot be read or is malformed."""


class UnknownNameError(VramcalcError):
    """A model, GPU or format name that does not resolve."""


class UnknownModelError(UnknownNameError):
    """No catalog model has this id or alias."""


class UnknownGpuError(UnknownNameError):
    """No catalog GPU has this id or alias."""


class UnknownFormatError(UnknownNameError):
    """No weight or KV format has this name, or no format has this bit width."""


class ModelFileError(VramcalcError):
    """A local model file or directory (config.json, safetensors, GGUF, HF cache) cannot be used."""


class PlanError(VramcalcError):
    """One or more plan files or deployments are invalid: one line per problem, file:line first."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = tuple(messages)
