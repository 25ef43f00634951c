"""Images and the training-shard format."""
