"""medtl.inference."""
