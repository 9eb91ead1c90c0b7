"""medtl.review."""
