"""medtl.transfer."""
