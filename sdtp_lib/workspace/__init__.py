"""The notebook workspace (nothing is imported here; import the module you need):

- `pipeline`: the numbered notebooks run headlessly by papermill into run folders (profiles, resume);
- `explorer`: the saliency explorer widget (tokens x stages, kept / dropped);
- `plots`: latency, saliency-sparsity and training-curve figures.
"""
