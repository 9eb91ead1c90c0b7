"""medtl.io."""
