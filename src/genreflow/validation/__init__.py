"""The validate stage: quality checks (Great Expectations), quarantine and the per-track split."""

from genreflow.validation.stage import ValidationFailed, ValidationSummary, validate

__all__ = ["ValidationFailed", "ValidationSummary", "validate"]
