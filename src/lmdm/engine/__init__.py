"""The runtime: everything that runs while music is made — the stream (window, cache, sampler,
guidance), the model facade (`LiveMusicModel`), prompts, the beat clock and sketch inputs, and the
renderers built on the stream (generate, accompany, generative delay). It imports neither
`lmdm.train`, `lmdm.eval` nor `lmdm.data`."""
