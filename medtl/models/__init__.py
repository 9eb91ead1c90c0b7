"""medtl.models."""
