"""medtl.training."""
