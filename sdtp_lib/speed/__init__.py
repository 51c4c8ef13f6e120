"""Making the pruned model fast and measuring it (nothing is imported here; import the module you need):

- `kernels`: `fast_prefill`, fused RMSNorm / rotary / SiLU-mul and chunked MLPs for long prefills;
- `memory`: MLPs over the sequence in chunks (peak memory);
- `decode`: `greedy_generate`, per-layer static KV caches of the kept tokens and one CUDA graph per step;
- `profiling`: prefill / end-to-end latency, FLOPs, peak memory and KV bytes, dense vs SDTP, two engines.
"""
