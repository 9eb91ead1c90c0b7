"""medtl.reports."""
