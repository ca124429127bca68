"""Reports: comparison tables and plots."""

from advlab.report.tables import format_comparisons

__all__ = ["format_comparisons"]
