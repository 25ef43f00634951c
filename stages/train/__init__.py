"""Training stages (tokenizer, CLIP, ...) over one shared accelerate loop."""
