"""Feeding a streaming encoder or decoder in uneven pieces (the Oobleck and spectral codec tests)."""


def stream_in_pieces(streamer, x, sizes):
    """Push `x` along its last axis in pieces of `sizes` (cycled), yielding (output, inputs pushed so
    far) after each push, then (flush output, None)."""
    outs, i, k = [], 0, 0
    while i < x.shape[-1]:
        n = sizes[k % len(sizes)]
        outs.append(streamer.push(x[..., i:i + n]))
        i, k = i + n, k + 1
        yield outs[-1], min(i, x.shape[-1])
    yield streamer.flush(), None
