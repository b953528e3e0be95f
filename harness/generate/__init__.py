"""Generative (decoder) measurement: per-token timing statistics, KV-cache accounting, prompts
from the corpus, and fidelity of generated tokens. Pure functions except :mod:`.prompts`, which
reads the corpus, and :mod:`.execute`, which drives a backend."""
