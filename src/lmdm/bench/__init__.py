"""Speed, measured: `streams` times the streaming DiT and whole audio blocks (every attention
pattern, dtype and thread count side by side, `lmdm bench`), `autoencoder` the codec, `flops` counts
the arithmetic each pattern needs, and `machine` names the CPU and measures its matmul peak, which
the achieved GFLOP/s are read against. Training throughput is `lmdm.train.bench`."""
