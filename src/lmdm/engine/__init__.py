"""The runtime: everything that runs while music is made. It imports neither `lmdm.train`,
`lmdm.eval` nor `lmdm.data`.

- `model` (LiveMusicModel: the DiT and its conditioners, the factory for streams), `stream` (Stream:
  window, cache, conditioning, one block per call), `runners` (each attention pattern's block),
  `state` (versioned save/restore), `cache`, `sampling`, `prompts`;
- `guidance/` (the guidance protocol and registry: CFG, sketch and beat guidance as branches of the
  model batch; prompt and control guidance as refiners of the clean estimate), `inputs` (the sketch,
  accompaniment and beat clock as timed inputs), `beat`, `sketch`, `control_guidance`,
  `prompt_guidance` (the math the guidance and inputs run);
- renderers built on the stream: `generate`, `accompany`, `delay` (generative delay).
Per-request knobs travel in one `lmdm.config.SamplingConfig`."""
