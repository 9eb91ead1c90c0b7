"""medtl.evaluation."""
